"""schemathesis against /api/openapi.json: generated requests (a bounded number per operation) never get a 5xx, on
SQLite and on PostgreSQL (where a NUL byte in text was a 500)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.services import BOTH_BACKENDS

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)]
EXAMPLES = 25  # per operation: bounded, so the suite stays fast; schemathesis adds its own edge cases


def test_no_server_errors(app, users):
    """Any body, path id or type the spec allows gets a non-5xx answer, for an operator (every permission)."""
    import redis

    from tests import services

    app.config["REDIS_URL"] = services.redis_url()  # with Redis up, a 503 from Retrain would be a real failure
    redis.Redis.from_url(app.config["REDIS_URL"]).flushdb()
    operator = users.create("fuzz", "operator")
    with app.test_client() as client:  # a few prompts, so {} on /api/comparisons can also succeed
        client.post("/api/prompts", json={"prompts": ["Send the report now.", "Fix this bug today."]},
                    headers=operator["headers"])
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12, "every documented operation is exercised"
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            response = case.call(headers=operator["headers"])
            if response.status_code >= 500:
                failures.append((case.method, case.formatted_path, case.body, response.status_code,
                                 response.text[:300]))

        check()
    redis.Redis.from_url(app.config["REDIS_URL"]).flushdb()
    assert failures == []
