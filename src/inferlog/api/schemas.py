"""Request and response models. The input model is generated from the feature spec."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from inferlog.features import FEATURES
from inferlog.ml.dataset import held_out_examples

EXAMPLE_CASE = held_out_examples()["malignant"]


def _case_model() -> type[BaseModel]:
    fields: dict[str, Any] = {
        f.name: (
            Annotated[
                float,
                Field(
                    ge=f.lower,
                    le=f.upper,
                    allow_inf_nan=False,
                    strict=True,
                    title=f.label,
                    description=f"{f.description} ({f.unit}); range {f.lower} to {f.upper}",
                    examples=[EXAMPLE_CASE[f.name]],
                ),
            ],
            ...,
        )
        for f in FEATURES
    }
    return create_model(
        "Case",
        __config__=ConfigDict(
            extra="forbid",
            # A copy typed as JSON for the checker (a dict of floats is not a JsonDict to it).
            json_schema_extra={"examples": [{**EXAMPLE_CASE}]},
        ),
        __doc__="One case: the 30 measurements of the feature spec, all required.",
        **fields,
    )


if TYPE_CHECKING:
    # Made from the feature spec at import: to the type checker, a pydantic model.
    Case = BaseModel
else:
    Case = _case_model()


class TopFeature(BaseModel):
    name: str = Field(description="feature name")
    value: float = Field(description="the value sent")
    contribution: float = Field(
        description="signed contribution to the log-odds of malignancy, "
        "relative to an average training case (positive = towards malignant)"
    )


class CasePrediction(BaseModel):
    label: Literal["malignant", "benign"]
    probability_malignant: float = Field(ge=0, le=1)
    threshold: float = Field(description="decision threshold on probability_malignant")
    risk_level: Literal["LOW", "MEDIUM", "HIGH"]
    top_features: list[TopFeature]
    out_of_range_features: list[str] = Field(
        description="features outside the training range (accepted, but less certain)"
    )


class PredictionResponse(CasePrediction):
    transaction_id: str
    model_version: str
    latency_ms: float = Field(description="time spent in the API for this request")


class ProbabilitiesResponse(BaseModel):
    transaction_id: str
    model_version: str
    probabilities: dict[Literal["malignant", "benign"], float]


class BatchResponse(BaseModel):
    transaction_id: str
    model_version: str
    count: int
    predictions: list[CasePrediction]
    latency_ms: float


class FieldError(BaseModel):
    field: str = Field(description="the offending field, or `body` for the request as a whole")
    reason: str
    index: int | None = Field(None, description="position in a JSON batch (0-based)")
    row: int | None = Field(None, description="CSV line number (the header is line 1)")


class ErrorResponse(BaseModel):
    error: str = Field(description="machine-readable error code")
    message: str
    transaction_id: str | None = None
    errors: list[FieldError] = Field(
        default_factory=list,
        description="the first 50 problems, each field and reason cut to 256 characters",
    )
    omitted: int = Field(0, description="problems found beyond those listed")
