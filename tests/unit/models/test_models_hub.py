"""HubClient over huggingface_hub, against an in-memory hub (httpx2.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx2
import pytest
from huggingface_hub import set_client_factory
from huggingface_hub.utils import get_session
from huggingface_hub.utils._http import default_client_factory
from llf_common.errors import LLFError
from llf_models.hub import HubAccessDenied, HubClient, HubNotFound, HubUnavailable, translate
from pydantic import SecretStr

ENDPOINT = "http://hub.test"
SHA = "c" * 40
LFS_SHA = "d" * 64
BLOB = "e" * 40

Handler = Callable[[httpx2.Request], httpx2.Response]


@pytest.fixture
def hub(request: pytest.FixtureRequest) -> Iterator[list[httpx2.Request]]:
    """Route huggingface_hub's shared client to a handler set with ``hub.handler = ...``."""
    seen: list[httpx2.Request] = []
    state: dict[str, Handler] = {"handler": model_info_handler}

    def dispatch(req: httpx2.Request) -> httpx2.Response:
        if req.url.path.endswith("/api/agent-harnesses"):  # huggingface_hub's own telemetry lookup
            return httpx2.Response(404)
        seen.append(req)
        return state["handler"](req)

    set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(dispatch), follow_redirects=True))
    request.node.hub_state = state
    try:
        yield seen
    finally:
        set_client_factory(default_client_factory)


def use(request: pytest.FixtureRequest, handler: Handler) -> None:
    request.node.hub_state["handler"] = handler


def model_info_handler(req: httpx2.Request) -> httpx2.Response:
    siblings = [
        {"rfilename": "config.json", "size": 10, "blobId": BLOB},
        {
            "rfilename": "model.safetensors",
            "size": 99,
            "blobId": "f" * 40,
            "lfs": {"sha256": LFS_SHA, "size": 99, "pointerSize": 130},
        },
        {"rfilename": "extra/notes.txt", "size": 3, "blobId": "a" * 40},
    ]
    return httpx2.Response(200, json={"id": "o/n", "sha": SHA, "siblings": siblings})


def error(status: int, code: str | None = None, message: str = "") -> Handler:
    def handler(req: httpx2.Request) -> httpx2.Response:
        headers = {"X-Error-Code": code} if code else {}
        if message:
            headers["X-Error-Message"] = message
        return httpx2.Response(status, headers=headers, content=json.dumps({"error": message}).encode())

    return handler


def test_resolve_lists_files_with_blob_ids_and_lfs_digests(hub: list[httpx2.Request]) -> None:
    remote = HubClient(ENDPOINT, SecretStr("hf_secret")).resolve("o/n", "main")
    assert remote.sha == SHA and remote.total_bytes == 112
    by_path = {f.path: f for f in remote.files}
    assert by_path["model.safetensors"].lfs and by_path["model.safetensors"].etag == LFS_SHA
    assert by_path["config.json"].etag == BLOB and by_path["config.json"].sha256 is None
    assert str(hub[0].url) == f"{ENDPOINT}/api/models/o/n/revision/main?blobs=true"
    assert hub[0].headers["authorization"] == "Bearer hf_secret"


def test_resolve_applies_allow_and_ignore_patterns(hub: list[httpx2.Request]) -> None:
    client = HubClient(ENDPOINT)
    assert [f.path for f in client.resolve("o/n", "main", ["*.json"]).files] == ["config.json"]
    assert "extra/notes.txt" not in [f.path for f in client.resolve("o/n", "main", None, ["extra/*"]).files]
    with pytest.raises(HubNotFound, match="matches the allow/ignore patterns"):
        client.resolve("o/n", "main", ["*.gguf"])
    assert "authorization" not in hub[0].headers


@pytest.mark.parametrize(
    ("handler", "kind", "text"),
    [
        (error(401, "RepoNotFound"), HubNotFound, "repository o/n not found on the hub"),
        (error(404, "RevisionNotFound"), HubNotFound, "revision main not found in o/n"),
        (error(403, "GatedRepo"), HubAccessDenied, "gated"),
        (error(403, None, "forbidden"), HubAccessDenied, "HF_TOKEN"),
        (error(404), HubNotFound, "o/n@main not found"),
        (error(500), HubUnavailable, "answered 500"),
    ],
)
def test_hub_errors_become_one_clear_sentence(
    request: pytest.FixtureRequest, hub: list[httpx2.Request], handler: Handler, kind: type[LLFError], text: str
) -> None:
    use(request, handler)
    with pytest.raises(kind, match=text):
        HubClient(ENDPOINT, timeout=1).resolve("o/n", "main")


def test_unreachable_hub_and_bad_answers_are_unavailable(request: pytest.FixtureRequest, hub: list) -> None:
    def refuse(req: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused")

    use(request, refuse)
    with pytest.raises(HubUnavailable, match="cannot reach the hub for o/n@main: ConnectError"):
        HubClient(ENDPOINT, timeout=1).resolve("o/n", "main")
    use(request, lambda req: httpx2.Response(200, json={"id": "o/n", "siblings": []}))
    with pytest.raises(HubUnavailable, match="which commit"):
        HubClient(ENDPOINT).resolve("o/n", "main")
    use(request, lambda req: httpx2.Response(200, json={"id": "o/n", "sha": SHA, "siblings": [{"rfilename": "x"}]}))
    with pytest.raises(HubUnavailable, match="no size or blob id"):
        HubClient(ENDPOINT).resolve("o/n", "main")


def test_locate_heads_the_file_and_keeps_the_token_on_the_hub(request: pytest.FixtureRequest, hub: list) -> None:
    def head(req: httpx2.Request) -> httpx2.Response:
        assert req.method == "HEAD"
        if "cdn" in str(req.url):
            return httpx2.Response(200, headers={"Content-Length": "99", "ETag": f'"{LFS_SHA}"'})
        return httpx2.Response(
            302,
            headers={
                "Location": "http://cdn.test/blob",
                "X-Repo-Commit": SHA,
                "X-Linked-Etag": f'"{LFS_SHA}"',
                "X-Linked-Size": "99",
            },
        )

    use(request, head)
    location = HubClient(ENDPOINT, SecretStr("tok")).locate("o/n", SHA, "model.safetensors")
    assert location.url == "http://cdn.test/blob" and location.size == 99 and location.etag == LFS_SHA
    assert location.same_host is False
    use(request, lambda req: httpx2.Response(200, headers={"Content-Length": "10", "ETag": f'"{BLOB}"'}))
    local = HubClient(ENDPOINT).locate("o/n", SHA, "config.json")
    assert local.same_host and local.url == f"{ENDPOINT}/o/n/resolve/{SHA}/config.json"
    use(request, error(404, "EntryNotFound"))
    with pytest.raises(HubNotFound, match=r"file config\.json not found"):
        HubClient(ENDPOINT).locate("o/n", SHA, "config.json")


def test_translate_passes_our_errors_through_and_wraps_the_unexpected() -> None:
    ours = HubNotFound("x")
    assert translate(ours, "o/n") is ours
    assert isinstance(translate(OSError("disk"), "o/n"), HubUnavailable)
    assert "unexpected answer" in translate(ValueError("?"), "o/n").detail
    assert get_session() is not None
