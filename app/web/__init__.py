"""The web layer: blueprints, the JSON API's shapes and OpenAPI, error pages, and the CLI."""
