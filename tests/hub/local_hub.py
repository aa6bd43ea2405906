"""A minimal local Hub: the HTTP endpoints `create_repo`, `upload_folder` and `hf_hub_download` use, in memory.

Written for the publish test because the package `hf-local-hub` (3.0.0) ships only a Python client: its server is
a Go binary that the wheel does not contain (`serve_background` raises FileNotFoundError). The endpoints follow
hf_conventions.md §9 (huggingface_hub 2.4 with `HF_HUB_DISABLE_XET=1`): repository creation, card metadata
validation, preupload, the LFS batch API with single PUT uploads, ndjson commits, and `resolve` with the metadata
headers downloads read
(`X-Repo-Commit`, `ETag`/`X-Linked-Etag`, `X-Linked-Size`). Writes need the token given to the server. Every
request is recorded; one the server does not know is answered 404 and listed in `unknown`.
"""

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
REVISION = r"(?P<revision>[^/]+)"


@dataclass
class Repository:
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)  # paths committed as LFS pointers
    commits: list[str] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.commits[-1] if self.commits else "0" * 40


class LocalHub:
    """Serves on 127.0.0.1 in a background thread; `endpoint` is what HF_ENDPOINT must be set to."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repository] = {}
        self.objects: dict[str, bytes] = {}  # LFS objects by sha256
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "LocalHub":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _handler(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # quiet
            return

        # ---- plumbing ----
        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":  # a HEAD answer has the headers of the GET one, without its body
                self.wfile.write(body)

        def _json(self, status: int, value, headers: dict | None = None) -> None:
            self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _error(self, status: int, code: str, message: str) -> None:
            self._json(status, {"error": message}, {"X-Error-Code": code, "X-Error-Message": message})

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {hub.token}":
                return True
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return False

        def _repo(self, repo_id: str) -> Repository | None:
            repo = hub.repos.get(repo_id)
            if repo is None or (repo.private and self.headers.get("Authorization") != f"Bearer {hub.token}"):
                self._error(404, "RepoNotFound", f"Repository {repo_id} not found")
                return None
            return repo

        def _route(self, method: str) -> None:
            path = unquote(urlsplit(self.path).path)
            with hub.lock:
                hub.requests.append((method, path))
            for pattern, handler in ROUTES.get(method, []):
                match = re.fullmatch(pattern, path)
                if match:
                    with hub.lock:
                        handler(self, **match.groupdict())
                    return
            hub.unknown.append((method, path))
            self._error(404, "NotFound", f"{method} {path} is not served by the local hub")

        def do_GET(self) -> None:
            self._route("GET")

        def do_HEAD(self) -> None:
            self._route("HEAD")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PUT(self) -> None:
            self._route("PUT")

        # ---- endpoints ----
        def create_repo(self) -> None:
            payload = json.loads(self._body())
            if not self._authorised():
                return
            repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
            url = f"{hub.endpoint}/{repo_id}"
            if repo_id in hub.repos:
                self._json(409, {"error": "You already created this model repo", "url": url})
                return
            # huggingface_hub 2.x sends "visibility", 1.x "private"
            private = payload.get("visibility") == "private" or payload.get("private") is True
            hub.repos[repo_id] = Repository(private=private)
            self._json(200, {"url": url, "name": repo_id, "id": repo_id})

        def validate_yaml(self) -> None:
            """The card metadata between the leading `---` lines must be a YAML mapping (as the Hub requires)."""
            content = json.loads(self._body())["content"]
            match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, flags=re.DOTALL)
            try:
                metadata = yaml.safe_load(match.group(1)) if match else {}
            except yaml.YAMLError as error:
                metadata = f"invalid YAML: {error}"
            if not isinstance(metadata, dict):
                self._json(400, {"errors": [{"message": f"metadata must be a mapping, got {metadata!r}"}]})
                return
            self._json(200, {"errors": [], "warnings": []})

        def preupload(self, repo: str, revision: str) -> None:
            payload = json.loads(self._body())
            if not self._authorised() or self._repo(repo) is None:
                return
            files = [
                {
                    "path": item["path"],
                    "uploadMode": "lfs" if item["path"].endswith((".safetensors", ".bin")) else "regular",
                    "shouldIgnore": False,
                    "oid": None,
                }
                for item in payload["files"]
            ]
            self._json(200, {"files": files, "commitOid": hub.repos[repo].head})

        def lfs_batch(self, repo: str) -> None:
            payload = json.loads(self._body())
            if not self._authorised() or self._repo(repo) is None:
                return
            objects = []
            for item in payload["objects"]:
                entry = {"oid": item["oid"], "size": item["size"], "authenticated": True}
                if item["oid"] not in hub.objects:
                    entry["actions"] = {"upload": {"href": f"{hub.endpoint}/lfs-upload/{item['oid']}", "header": {}}}
                objects.append(entry)
            self._json(
                200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"}
            )

        def lfs_upload(self, oid: str) -> None:
            data = self._body()
            if hashlib.sha256(data).hexdigest() != oid:
                self._error(400, "BadRequest", "the uploaded content does not match its sha256")
                return
            hub.objects[oid] = data
            self._send(200)

        def commit(self, repo: str, revision: str) -> None:
            lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
            if not self._authorised() or self._repo(repo) is None:
                return
            repository = hub.repos[repo]
            files, lfs = dict(repository.files), set(repository.lfs)
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                    lfs.discard(value["path"])
                elif key == "lfsFile":
                    if value["oid"] not in hub.objects:
                        self._error(422, "BadRequest", f"LFS object of {value['path']} was never uploaded")
                        return
                    files[value["path"]] = hub.objects[value["oid"]]
                    lfs.add(value["path"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
            digest = hashlib.sha1(repository.head.encode())
            for name in sorted(files):
                digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
            repository.files, repository.lfs = files, lfs
            repository.commits.append(digest.hexdigest())
            url = f"{hub.endpoint}/{repo}/commit/{repository.head}"
            self._json(200, {"commitUrl": url, "commitOid": repository.head, "pullRequestUrl": None})

        def resolve(self, repo: str, revision: str, file: str) -> None:
            repository = self._repo(repo)
            if repository is None:
                return
            if revision not in ("main", repository.head):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return
            if file not in repository.files:
                self._error(
                    404,
                    "EntryNotFound",
                    f"{file} does not exist on {revision}",
                )
                return
            data = repository.files[file]
            sha256 = hashlib.sha256(data).hexdigest()
            headers = {"X-Repo-Commit": repository.head, "ETag": f'"{sha256}"'}
            if file in repository.lfs:
                headers.update({"X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(len(data))})
            self._send(200, data, headers)

        def model_info(self, repo: str, revision: str | None = None) -> None:
            repository = self._repo(repo)
            if repository is None:
                return
            siblings = [{"rfilename": name} for name in sorted(repository.files)]
            self._json(200, {"id": repo, "modelId": repo, "sha": repository.head, "private": repository.private,
                             "siblings": siblings, "tags": [], "downloads": 0, "likes": 0})  # fmt: skip

        def tree(self, repo: str, revision: str, subpath: str = "") -> None:
            repository = self._repo(repo)
            if repository is None:
                return
            entries = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in sorted(repository.files.items())
                if not subpath or name.startswith(subpath.rstrip("/") + "/")
            ]
            self._json(200, entries)

    ROUTES = {
        "POST": [
            (r"/api/repos/create", Handler.create_repo),
            (r"/api/validate-yaml", Handler.validate_yaml),
            (rf"/api/models/{REPO}/preupload/{REVISION}", Handler.preupload),
            (rf"/{REPO}\.git/info/lfs/objects/batch", Handler.lfs_batch),
            (rf"/api/models/{REPO}/commit/{REVISION}", Handler.commit),
        ],
        "PUT": [(r"/lfs-upload/(?P<oid>[0-9a-f]{64})", Handler.lfs_upload)],
        "HEAD": [(rf"/{REPO}/resolve/{REVISION}/(?P<file>.+)", Handler.resolve)],
        "GET": [
            (rf"/{REPO}/resolve/{REVISION}/(?P<file>.+)", Handler.resolve),
            (rf"/api/models/{REPO}/revision/{REVISION}", Handler.model_info),
            (rf"/api/models/{REPO}", Handler.model_info),
            (rf"/api/models/{REPO}/tree/{REVISION}(?:/(?P<subpath>.*))?", Handler.tree),
        ],
    }
    return Handler
