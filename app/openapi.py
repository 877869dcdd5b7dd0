"""The OpenAPI 3 description of /api (hand-written: the API is small and its contract matters)."""

from __future__ import annotations


def _obj(props: dict, required: list[str] | None = None, extra: bool = True) -> dict:
    out = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        out["required"] = required
    return out


ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
COMPARISON = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Comparison"}}}}
RUN = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/TrainingRun"}}}}


def _errors(*codes: int) -> dict:
    return {str(c): ERROR for c in codes}


def openapi_spec() -> dict:
    """Build the spec."""
    json_body = lambda schema: {"required": True, "content": {"application/json": {"schema": schema}}}  # noqa: E731
    return {
        "openapi": "3.0.3",
        "info": {"title": "prefloop API", "version": "1.0.0",
                 "description": "Bearer tokens come from `flask users create`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _obj({"error": {"type": "string"}, "status": {"type": "integer"}}, ["error"]),
                "Candidate": _obj({"id": {"type": "integer"}, "text": {"type": "string"}}, ["id", "text"]),
                "Comparison": _obj({
                    "id": {"type": "integer"}, "prompt": {"type": "string"},
                    "candidates": {"type": "array", "items": {"$ref": "#/components/schemas/Candidate"}},
                }, ["id", "prompt", "candidates"]),
                "TrainingRun": _obj({"id": {"type": "string"}, "status": {"type": "string"}}, ["id", "status"]),
                "ModelVersion": _obj({"id": {"type": "integer"}, "parent_id": {"type": "integer", "nullable": True},
                                      "status": {"type": "string"}, "active": {"type": "boolean"}},
                                     ["id", "parent_id", "status", "active"]),
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"security": [], "responses": {"200": {"description": "ok"}}}},
            "/api/comparisons": {"post": {
                "summary": "New comparison for a typed prompt, or {} for the next pool prompt",
                "requestBody": json_body(_obj({"prompt": {"type": "string"}}, extra=False)),
                "responses": {"201": {"description": "created", **COMPARISON}, **_errors(400, 401, 403, 404, 413, 503)},
            }},
            "/api/comparisons/{id}": {"get": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "the comparison", **COMPARISON}, **_errors(401, 403, 404)},
            }},
            "/api/comparisons/{id}/answer": {"post": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "requestBody": json_body({"oneOf": [
                    _obj({"candidate_id": {"type": "integer"}, "latency_ms": {"type": "integer"}}, ["candidate_id"]),
                    _obj({"verdict": {"type": "string", "enum": ["tie", "all_bad", "skip"]}}, ["verdict"]),
                ]}),
                "responses": {"201": {"description": "stored"}, "200": {"description": "same answer already stored"},
                              **_errors(400, 401, 403, 404, 409, 422)},
            }},
            "/api/comparisons/{id}/undo": {"post": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "undone", **COMPARISON}, **_errors(401, 403, 404, 409)},
            }},
            "/api/progress": {"get": {"responses": {"200": {"description": "counters"}, **_errors(401, 403)}}},
            "/api/preferences/export": {"get": {
                "summary": "TRL preference pairs {prompt, chosen, rejected} as JSON lines",
                "responses": {"200": {"description": "pairs", "content": {"application/x-ndjson": {
                    "schema": {"type": "string"}}}}, **_errors(401, 403)},
            }},
            "/api/prompts": {"post": {
                "requestBody": json_body(_obj({"prompts": {"type": "array", "items": {"type": "string"}}},
                                              ["prompts"], extra=False)),
                "responses": {"201": {"description": "imported", "content": {"application/json": {
                    "schema": _obj({"imported": {"type": "integer"}}, ["imported"])}}},
                    **_errors(400, 401, 403, 413)},
            }},
            "/api/training-runs": {
                "post": {
                    "summary": "Queue one DPO run (202), or return the queued/running one (200): single flight",
                    "requestBody": json_body(_obj({
                        "beta": {"type": "number", "minimum": 1e-4, "maximum": 10},
                        "epochs": {"type": "integer", "minimum": 1, "maximum": 50},
                        "learning_rate": {"type": "number", "minimum": 1e-7, "maximum": 0.1},
                        "lora": {"type": "boolean"},
                    }, extra=False)),
                    "responses": {"202": {"description": "queued", **RUN},
                                  "200": {"description": "already open", **RUN},
                                  **_errors(400, 401, 403, 409, 503)},
                },
                "get": {"responses": {"200": {"description": "recent runs"}, **_errors(401, 403)}},
            },
            "/api/training-runs/{id}": {"get": {
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the run with progress and metrics", **RUN},
                              **_errors(401, 403, 404)},
            }},
            "/api/model-versions": {"get": {
                "responses": {"200": {"description": "every version", "content": {"application/json": {"schema": _obj(
                    {"versions": {"type": "array", "items": {"$ref": "#/components/schemas/ModelVersion"}}},
                    ["versions"])}}}, **_errors(401, 403)},
            }},
            "/api/model-versions/{id}/activate": {"post": {
                "summary": "Serve this version (also how to roll back); audited",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "requestBody": json_body(_obj({"reason": {"type": "string", "minLength": 1}}, ["reason"])),
                "responses": {"200": {"description": "activated"}, **_errors(400, 401, 403, 404, 409)},
            }},
            "/api/serving": {"get": {
                "summary": "Which version the answering web process serves, and its last load error",
                "responses": {"200": {"description": "this process"}, **_errors(401, 403)},
            }},
        },
    }
