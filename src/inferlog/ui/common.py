"""What every tab shows the same way: an API failure, an empty state."""

from __future__ import annotations

import html


def error_box(message: str) -> str:
    return f"<div class='inferlog-error' role='alert'>⚠️ {html.escape(message)}</div>"


def notice(message: str) -> str:
    """An empty state, said plainly (`code` in backticks is shown as code)."""
    parts = html.escape(message).split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    return f"<div class='inferlog-notice'>{text}</div>"


def window_phrase(window_seconds: int) -> str:
    minutes = window_seconds // 60
    return f"the last {minutes} minutes" if minutes != 60 else "the last hour"


CSS = """
.inferlog-error { background:#fdecea; color:#8a1c12; padding:10px 14px; border-radius:6px; }
.inferlog-notice { background:#eef4fb; color:#1d3b5a; padding:10px 14px; border-radius:6px; }
.inferlog-bar { position:relative; height:22px; background:#eee; border-radius:4px;
                overflow:hidden; }
.inferlog-threshold { position:absolute; top:0; bottom:0; width:2px; background:#222; }
.inferlog-drift td, .inferlog-drift th { padding:2px 8px; }
.inferlog-drift tr.drifted { background:#fde2e2; font-weight:bold; }
.inferlog-profile-row { display:grid; grid-template-columns:minmax(120px, 30%) 1fr; gap:8px;
                        align-items:center; margin:4px 0; }
.inferlog-profile-row code { overflow-wrap:anywhere; }
.inferlog-hbar { position:relative; height:16px; margin:2px 0; }
.inferlog-hbar span { display:block; height:100%; border-radius:2px; }
.inferlog-hbar em { position:absolute; left:6px; top:0; font-size:11px; font-style:normal; }
.inferlog-hbar.self span, .inferlog-legend .self { background:#e67e22; }
.inferlog-hbar.cumulative span, .inferlog-legend .cumulative { background:#85a9d6; }
.inferlog-legend span { display:inline-block; width:12px; height:12px; margin:0 4px 0 12px; }
"""
