"""The role matrix: every mutating route (API and forms) against every role, anonymous included."""

import re
from urllib.parse import urlsplit

import pytest

ROLES = ("anonymous", "annotator", "admin", "operator")
# Who may do what (app/tables.py PERMISSIONS): annotators annotate; admins also import, export and retrain;
# operators also activate and roll back.
ALLOWED = {
    "annotate": {"annotator", "admin", "operator"},
    "import": {"admin", "operator"},
    "retrain": {"admin", "operator"},
    "task": {"admin", "operator"},
    "users": {"admin", "operator"},
    "activate": {"operator"},
}
TASK = {"question": "Which reply is best?", "guidelines": "Pick the *kindest* one.", "system_prompt": "Be kind."}

# (rule, permission, body). Bodies are valid, so an allowed role gets past the role check to the real work.
API_ROUTES = [
    ("/api/comparisons", "annotate", {"prompt": "Send it now."}),
    ("/api/comparisons/<id:comparison_id>/answer", "annotate", {"verdict": "skip"}),
    ("/api/comparisons/<id:comparison_id>/undo", "annotate", {}),
    ("/api/prompts", "import", {"prompts": ["Close the door."]}),
    ("/api/training-runs", "retrain", {}),
    ("/api/model-versions/<id:version_id>/activate", "activate", {"reason": "matrix"}),
    ("/api/arena/battles", "annotate", {"prompt": "Send it now."}),
    ("/api/arena/battles/<id:battle_id>/vote", "annotate", {"verdict": "tie"}),
    ("/api/task", "task", TASK),  # PUT
    ("/api/users", "users", {"name": "newbie", "role": "annotator"}),
    ("/api/users/<name>", "users", {"disabled": False}),  # PATCH
    ("/api/users/<name>/token", "users", {}),
    ("/api/comparisons/<id:comparison_id>/flag", "annotate", {"reason": "unclear"}),
    ("/api/flags/<id:flag_id>/resolve", "import", {"action": "clear"}),
    ("/api/model-versions/<id:version_id>/promote", "activate", {"reason": "matrix"}),
    ("/api/model-versions/<id:version_id>/retire", "activate", {"reason": "matrix"}),
    ("/api/model-versions/<id:version_id>/probes", "retrain", {}),
    ("/api/probes", "import", {"inputs": ["Close the door."]}),  # PUT
]
METHODS = {"/api/task": "PUT", "/api/users/<name>": "PATCH", "/api/probes": "PUT"}
CHALLENGER_ROUTES = ("/promote", "/retire")
FORM_ROUTES = [
    ("/admin/prompts", "import"),
    ("/admin/retrain", "retrain"),
    ("/ops/versions/<id:version_id>/activate", "activate"),
    ("/ops/rollback", "activate"),
    ("/admin/gold", "import"),
    ("/admin/task", "task"),
    ("/admin/task/<id:revision>/restore", "task"),
    ("/admin/users", "users"),
    ("/admin/users/<id:user_id>/change", "users"),
    ("/admin/users/<id:user_id>/token", "users"),
    ("/admin/flags/<id:flag_id>/resolve", "import"),
    ("/ops/arena/pairs", "activate"),
    ("/ops/arena/pairs/<id:pair_id>/delete", "activate"),
    ("/ops/versions/<id:version_id>/promote", "activate"),
    ("/ops/versions/<id:version_id>/retire", "activate"),
    ("/ops/versions/<id:version_id>/probes", "retrain"),
    ("/ops/probes", "import"),
]
PUBLIC_POSTS = {"/auth/login", "/auth/logout"}


def test_the_matrix_covers_every_mutating_route(app):
    """A new POST route without a row here fails this test, so the matrix cannot silently fall behind."""
    covered = {r for r, _, _ in API_ROUTES} | {r for r, _ in FORM_ROUTES} | PUBLIC_POSTS
    writes = {"POST", "PUT", "PATCH", "DELETE"}
    posts = {rule.rule for rule in app.url_map.iter_rules() if writes & (rule.methods or set())
             and not rule.rule.startswith("/rq/")}  # rq-dashboard (with Redis only): RQ_ROUTES, test_rq_dashboard_*
    assert posts == covered


def make_users(users) -> dict:
    return {role: users.create(role[:3] + "x", role) for role in ROLES if role != "anonymous"}


def own_comparison(client, user) -> int:
    res = client.post("/api/comparisons", json={"prompt": "Fix the build."}, headers=user["headers"])
    assert res.status_code == 201
    return res.json["id"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("rule", "permission", "body"), API_ROUTES, ids=[r[0] for r in API_ROUTES])
def test_api_roles(app, client, users, starter_dir, role, rule, permission, body):
    """401 without a token, 403 for a role without the permission, the real answer otherwise."""
    from tests.conftest import install_child

    people = make_users(users)
    owner = people[role] if role != "anonymous" else people["annotator"]
    comparison_id = own_comparison(client, owner)
    battle_id = 0
    if rule.startswith("/api/arena"):  # the arena needs two versions: version 2, a child of the starter
        install_child(app, starter_dir["gpt2"], number=2, parent=1)
        if rule.endswith("/vote"):
            res = client.post("/api/arena/battles", json={"prompt": "Fix it."}, headers=owner["headers"])
            battle_id = res.json["id"]
    version_id = 1
    if rule.endswith(CHALLENGER_ROUTES):  # version 2, a child of the starter, is the challenger
        from app.versions.registry import set_challenger

        install_child(app, starter_dir["gpt2"], number=2, parent=1, activate=False)
        with app.app_context():
            set_challenger(version_id=2, actor="test", reason="matrix")
        version_id = 2
    flag_id = 0
    if rule.startswith("/api/flags"):  # an open flag to resolve, on the owner's comparison
        flag_id = client.post(f"/api/comparisons/{comparison_id}/flag", json={"reason": "other"},
                              headers=owner["headers"]).json["id"]
    path = (rule.replace("<id:comparison_id>", str(comparison_id)).replace("<id:version_id>", str(version_id))
            .replace("<id:battle_id>", str(battle_id)).replace("<name>", people["annotator"]["name"])
            .replace("<id:flag_id>", str(flag_id)))
    if rule.endswith("/undo"):
        client.post(f"/api/comparisons/{comparison_id}/answer", json={"verdict": "skip"},
                    headers=(people.get(role) or people["annotator"])["headers"])
    headers = people[role]["headers"] if role != "anonymous" else {}
    res = client.open(path, method=METHODS.get(rule, "POST"), json=body, headers=headers)
    if role == "anonymous":
        assert res.status_code == 401, res.json
    elif role not in ALLOWED[permission]:
        assert res.status_code == 403 and res.json["error"] == "your role does not allow this"
    else:
        # Retrain has no Redis in this app: 503 is the real, post-authorisation answer.
        expected = {"/api/training-runs": 503, "/api/model-versions/<id:version_id>/activate": 200,
                    "/api/task": 200, "/api/users/<name>": 200, "/api/users/<name>/token": 200,
                    "/api/flags/<id:flag_id>/resolve": 200, "/api/model-versions/<id:version_id>/promote": 200,
                    "/api/model-versions/<id:version_id>/retire": 200, "/api/probes": 200,
                    # The pool is empty, so there is no probe set to sample on: the real answer is a clear 409.
                    "/api/model-versions/<id:version_id>/probes": 409}.get(rule, 201)
        if rule.endswith("/undo"):
            expected = 200
        assert res.status_code == expected, res.json


def csrf_token(client, path="/") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("rule", "permission"), FORM_ROUTES, ids=[r[0] for r in FORM_ROUTES])
def test_form_roles(app, client, users, role, rule, permission):
    """Forms: anonymous is sent to the login page, a role without the permission gets 403, others are served."""
    people = make_users(users)
    path = (rule.replace("<id:version_id>", "1").replace("<id:pair_id>", "1").replace("<id:revision>", "1")
            .replace("<id:user_id>", str(people["annotator"]["id"])).replace("<id:flag_id>", "1"))
    data = {"reason": "matrix", **TASK}
    if role != "anonymous":
        users.login(client, people[role]["name"])
    data["csrf_token"] = csrf_token(client, "/" if role != "anonymous" else "/auth/login")
    res = client.post(path, data=data)
    if role == "anonymous":
        assert res.status_code == 302 and "/auth/login" in res.headers["Location"]
    elif role not in ALLOWED[permission]:
        assert res.status_code == 403
    elif rule.endswith("/token"):  # the new token is shown on the answer itself, once
        assert res.status_code == 200 and "API token" in res.get_data(as_text=True)
    else:
        assert res.status_code == 302 and "/auth/login" not in res.headers["Location"]


@pytest.mark.parametrize(("rule", "permission"), FORM_ROUTES, ids=[r[0] for r in FORM_ROUTES])
def test_forms_without_csrf_are_refused(app, client, users, rule, permission):
    """The right role is not enough: a form post without its CSRF token is a clear 400."""
    people = make_users(users)
    users.login(client, people["operator"]["name"])
    res = client.post(rule.replace("<id:version_id>", "1").replace("<id:pair_id>", "1").replace("<id:revision>", "1")
                      .replace("<id:user_id>", "1").replace("<id:flag_id>", "1"), data={"reason": "matrix"})
    assert res.status_code == 400 and "CSRF" in res.get_data(as_text=True)


@pytest.mark.parametrize(("path", "permission"), [("/admin/", "import"), ("/ops/versions", "import"),
                                                  ("/api/preferences/export", "import"),
                                                  ("/ops/versions/compare", "import"), ("/api/challenger", "import"),
                                                  ("/api/probes", "import"),
                                                  ("/api/model-versions/compare?a=1&b=1", "import")])
@pytest.mark.parametrize("role", ROLES[1:])
def test_admin_pages_need_the_role(app, client, users, role, path, permission):
    people = make_users(users)
    users.login(client, people[role]["name"])
    res = client.get(path)
    allowed = 409 if path.startswith("/api/model-versions/compare") else 200  # no probe set yet: the real answer
    assert res.status_code == (allowed if role in ALLOWED[permission] else 403)


# rq-dashboard, mounted at /rq/ when Redis is configured: every route it has, read-only or refused. Its requeue
# route answered GET, so a link could re-run a failed training run past CSRF; now no action runs, whatever the verb.
RQ_READ_ONLY = {
    "/rq/", "/rq/favicon.ico", "/rq/static/<path:filename>", "/rq/<int:instance_number>/",
    "/rq/<int:instance_number>/view", "/rq/<int:instance_number>/view/queues",
    "/rq/<int:instance_number>/view/workers", "/rq/<int:instance_number>/view/jobs",
    "/rq/<int:instance_number>/view/jobs/<queue_name>/<registry_name>/<int:per_page>/<order>/<int:page>",
    "/rq/<int:instance_number>/view/job/<job_id>", "/rq/<int:instance_number>/data/queues.json",
    "/rq/<int:instance_number>/data/jobs/<queue_name>/<registry_name>/<per_page>/<order>/<page>.json",
    "/rq/<int:instance_number>/data/job/<job_id>.json", "/rq/<int:instance_number>/data/workers.json",
}
RQ_ACTIONS = {
    "/rq/job/<job_id>/delete", "/rq/job/<job_id>/requeue", "/rq/requeue/<queue_name>",
    "/rq/queue/<queue_name>/<registry_name>/empty", "/rq/queue/<queue_name>/compact",
}
RQ_VALUES = {"instance_number": "0", "job_id": "run-failed", "queue_name": "training", "registry_name": "failed",
             "per_page": "10", "order": "asc", "page": "1", "filename": "css/main.css"}


@pytest.fixture
def rq_app(tmp_path, starter_dir):
    """An app with Redis, its dashboard mounted, three users, and one failed job on the training queue."""
    import redis
    from rq import Queue, SimpleWorker

    from app import create_app
    from app.platform.extensions import db
    from app.training.jobs import SERIALIZER
    from harness.starters import install_starter
    from tests import services
    from tests.conftest import Users, make_config, upgrade

    conn = redis.Redis.from_url(services.redis_url())
    conn.flushdb()
    app = create_app(make_config(backend="sqlite", tmp_path=tmp_path, REDIS_URL=services.redis_url()))
    upgrade(app)
    install_starter(app, starter_dir["gpt2"])
    users = Users(app)
    for name, role in (("ann", "annotator"), ("adm", "admin"), ("opr", "operator")):
        users.create(name, role)
    queue = Queue("training", connection=conn, serializer=SERIALIZER)
    queue.enqueue("builtins.int", "not a number", job_id="run-failed")  # a job that fails, as a failed run's did
    SimpleWorker([queue], connection=conn, serializer=SERIALIZER).work(burst=True)
    assert queue.failed_job_registry.get_job_ids() == ["run-failed"]
    yield app, users, queue
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
    conn.flushdb()


def rq_path(rule: str) -> str:
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: RQ_VALUES[m.group(1)], rule)


@pytest.mark.redis
def test_rq_dashboard_matrix_covers_every_route(rq_app):
    """A dashboard upgrade that adds a route fails here until the route is sorted into read-only or refused."""
    app, _, _ = rq_app
    assert {r.rule for r in app.url_map.iter_rules() if r.rule.startswith("/rq/")} == RQ_READ_ONLY | RQ_ACTIONS


@pytest.mark.redis
@pytest.mark.parametrize("role", ROLES)
def test_rq_dashboard_routes_are_read_only_for_every_role(rq_app, role):
    """Every route and verb under /rq/: login for anonymous, 403 for annotators; admins and operators read, and
    every action (GET or POST, with a valid CSRF token) is refused and changes nothing."""
    app, users, queue = rq_app
    client = app.test_client()
    if role != "anonymous":
        users.login(client, {"annotator": "ann", "admin": "adm", "operator": "opr"}[role])
    token = csrf_token(client, "/" if role != "anonymous" else "/auth/login")
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/rq/"):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            data = {"csrf_token": token} if method == "POST" else None
            res = client.open(rq_path(rule.rule), method=method, data=data)
            if res.status_code == 308:  # routing: an alias of the dashboard's front page sends to its canonical URL
                location = urlsplit(res.headers["Location"]).path
                assert location.startswith("/rq/"), location
                res = client.open(location, method=method, data=data)
            where = (role, method, rule.rule, res.status_code)
            if role == "anonymous":
                assert res.status_code == 302 and "/auth/login" in res.headers["Location"], where
            elif role == "annotator":
                assert res.status_code == 403, where
            elif rule.rule in RQ_ACTIONS:
                assert res.status_code == 405 and "read-only" in res.get_data(as_text=True), where
            else:
                assert res.status_code == 200 and method == "GET", where
    # The failed job is still failed, and nothing was put back on the queue.
    assert queue.failed_job_registry.get_job_ids() == ["run-failed"] and queue.count == 0


@pytest.mark.redis
def test_rq_dashboard_is_for_admins_and_operators(rq_app):
    """/rq/ is mounted when Redis is configured: the login page for anonymous, 403 for annotators."""
    app, users, _ = rq_app
    anonymous = app.test_client().get("/rq/")
    assert anonymous.status_code == 302 and "/auth/login" in anonymous.headers["Location"]
    for name, expected in (("ann", 403), ("adm", 200), ("opr", 200)):
        client = app.test_client()
        users.login(client, name)
        res = client.get("/rq/")
        assert res.status_code == expected, (name, res.status_code)
        if expected == 200:
            assert "<title>RQ dashboard" in res.get_data(as_text=True)


@pytest.mark.redis
def test_rq_dashboard_answers_404_for_what_does_not_exist(rq_app):
    """Unknown jobs, Redis instances and pages past reason were 500s; now 404s (for admins; others never get here)."""
    app, users, _ = rq_app
    client = app.test_client()
    users.login(client, "adm")
    for path in ("/rq/0/view/job/nonexistent", "/rq/0/data/job/x.json", "/rq/7/view", "/rq/9/data/queues.json",
                 "/rq/0/data/jobs/training/failed/0/asc/1.json",
                 "/rq/0/data/jobs/training/failed/10/asc/99999999999999999999.json"):
        assert client.get(path).status_code == 404, path
    assert client.get("/rq/0/view/job/run-failed").status_code == 200
