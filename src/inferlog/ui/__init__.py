"""The Gradio UI, a separate process talking to the API over HTTP."""
