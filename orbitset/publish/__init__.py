"""Publishing a dataset: a Hugging Face dataset card (README.md) and Croissant metadata (croissant.json)."""
