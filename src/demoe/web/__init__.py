"""The Gradio web demo (imports the inference API only)."""
