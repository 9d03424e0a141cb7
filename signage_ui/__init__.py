"""signage_ui."""
