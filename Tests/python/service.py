"""Helpers for the `ich-server` integration tests and the end-to-end benchmark.

* `Server`: starts `ich-server serve` on 127.0.0.1 with an ephemeral port and
  its own data directory, reads the port from its `listening on` line, waits
  for /readyz, creates tokens (`ich-server token create`) and stops it with
  SIGTERM (graceful, exit 0 expected) or SIGKILL.
* `Client` / `RawConnection`: a small HTTP/1.1 client on raw sockets, so the
  protocol tests control every byte (keep-alive, pipelining, chunked bodies,
  `Expect: 100-continue`, broken framing). Every response `Client` gets is
  checked against openapi.yaml (`Contract`): the status must be documented for
  the operation (or be one of the any-route protocol statuses), the media type
  must be the documented one and JSON bodies must match the schema.
* `multipart_related` and `chunked`: STOW-RS bodies.
* `ct_bytes`: small synthetic CT (or MR, multi-frame...) Part-10 files.
* `test_bundle`: the small seeded InceptionV3 bundle the tests use (built once
  with Tools/keras_reference.py + Tools/convert_keras.py and cached).

The server binary is `$ICH_SERVER` (default `.build/release/ich-server`);
`ichctl` is `$ICHCTL` (default `.build/release/ichctl`). Relative paths are
taken from the repository root.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence
from urllib.parse import urlsplit

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS = REPO_ROOT / "Tools"
SPEC_PATH = REPO_ROOT / "openapi.yaml"
PLACEHOLDER_BUNDLE = REPO_ROOT / ".build-models" / "placeholder-inception_v3"

LABELS = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root, as Tools/make_test_dicoms.py uses
PROBLEM_PREFIX = "urn:ich-triage:problem:"


class ServiceError(RuntimeError):
    """The server could not be started or misbehaved outside a test's assertions."""


# --------------------------------------------------------------------------
# Binaries


def _from_env(variable: str, default: str) -> Path:
    configured = os.environ.get(variable)
    path = Path(configured).expanduser() if configured else Path(default)
    return path if path.is_absolute() else REPO_ROOT / path


def server_binary() -> Path:
    return _from_env("ICH_SERVER", ".build/release/ich-server")


def ichctl_binary() -> Path:
    return _from_env("ICHCTL", ".build/release/ichctl")


def binary_problem(path: Path) -> str | None:
    if not path.is_file():
        return f"{path} not found: run `swift build -c release` in {REPO_ROOT} (or set ICH_SERVER / ICHCTL)"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    return None


def tool_server_binary(given: Path | None) -> Path:
    """For the Tools/ scripts: `given` (their --server) or $ICH_SERVER or the release build; exits with
    status 2 and the reason when it cannot be run."""
    binary = given.resolve() if given else server_binary()
    problem = binary_problem(binary)
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(2)
    return binary


# --------------------------------------------------------------------------
# Model bundles


def bundle_cache() -> Path:
    import tempfile

    configured = os.environ.get("ICH_TEST_BUNDLE_CACHE")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"ich-service-tests-{os.getuid()}"


_bundle_lock = threading.Lock()


def test_bundle(arch: str = "inception_v3", size: int = 128, seed: int = 0) -> Path:
    """A bundle converted from a seeded random Keras model (Tools/keras_reference.py
    --seed SEED), with 2 golden vectors. Built once, cached under `bundle_cache()`
    (keyed by the converter's and the reference's sources, so a change rebuilds it)."""
    import hashlib

    digest = hashlib.sha256()
    for tool in ("keras_reference.py", "convert_keras.py", "architectures.py", "bundle.py"):
        digest.update((TOOLS / tool).read_bytes())
    folder = bundle_cache() / f"{arch}-{size}-seed{seed}-{digest.hexdigest()[:12]}"
    out = folder / "bundle"
    with _bundle_lock:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process (a benchmark, a second pytest) may be building it
            if (out / "model.json").is_file():
                return out
            weights = folder / f"{arch}.weights.h5"
            staging = folder / "bundle.partial"
            shutil.rmtree(staging, ignore_errors=True)
            env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="2")
            for command in (
                [sys.executable, str(TOOLS / "keras_reference.py"), "--arch", arch, "--size", str(size),
                 "--seed", str(seed), "--out", str(weights)],
                [sys.executable, str(TOOLS / "convert_keras.py"), "--arch", arch, "--weights", str(weights),
                 "--out", str(staging), "--golden", "2", "--input-size", str(size), "--synthetic-data",
                 "--name", f"test-{arch}-{size}", "--version", "1",
                 "--trained-on", "test fixture: seeded random weights"],
            ):
                result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
                if result.returncode != 0:
                    raise ServiceError(f"{' '.join(command[:3])} failed:\n{result.stderr[-3000:]}")
            staging.rename(out)
            return out


def test_bundle_weights(arch: str = "inception_v3", size: int = 128, seed: int = 0) -> Path:
    """The Keras weights file the test bundle was converted from."""
    return test_bundle(arch, size, seed).parent / f"{arch}.weights.h5"


test_bundle.__test__ = False  # not a pytest test, whatever the name says
test_bundle_weights.__test__ = False


# --------------------------------------------------------------------------
# DICOM


def _generator():
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    import make_test_dicoms

    return make_test_dicoms


def is_uid(text: str) -> bool:
    """PS3.5 9.1: digits and dots, no empty component, at most 64 characters."""
    return 0 < len(text) <= 64 and all(part.isdigit() and part.isascii() for part in text.split("."))


def new_uid() -> str:
    """A fresh UID (2.25 + a random UUID as an integer: unique across runs, <= 64 chars)."""
    return f"2.25.{uuid.uuid4().int}"


def case_bytes(name: str) -> bytes:
    """One file of Tools/make_test_dicoms.py by its case name."""
    generator = _generator()
    for case in generator.CASES:
        if case.name == name:
            return case.build()
    raise KeyError(name)


def slice_image(rows: int, cols: int, seed: int) -> np.ndarray:
    """A head-like phantom (int16 HU) with a bright blob whose place, size and
    level depend on `seed`, so that slices differ visibly to the model."""
    generator = _generator()
    hu = generator.phantom_hu(rows, cols, seed=seed).astype(np.int32)
    rng = np.random.default_rng([seed, 7])
    y, x = np.mgrid[0:rows, 0:cols]
    cy, cx = rng.uniform(0.3, 0.7) * rows, rng.uniform(0.3, 0.7) * cols
    radius = rng.uniform(0.05, 0.25) * min(rows, cols)
    level = rng.uniform(40, 1500)
    blob = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
    hu[blob] = int(level)
    return hu.astype(np.int16)


def ct_dataset(
    *,
    study: str,
    series: str | None = None,
    sop: str | None = None,
    instance: int | None = 1,
    position: Sequence[float] | None = None,
    orientation: Sequence[float] | None = (1, 0, 0, 0, 1, 0),
    rows: int = 64,
    cols: int = 64,
    seed: int = 0,
    modality: str = "CT",
    patient_name: str = "Synthetic^Phantom",
):
    """A pydicom CT data set (explicit VR little endian, int16, intercept -1024)."""
    generator = _generator()
    sop = sop or new_uid()
    stored = slice_image(rows, cols, seed).astype(np.int32) + 1024
    ds = generator.ct_dataset(f"service-test-{sop}", stored)
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series or study + ".1"
    ds.SOPInstanceUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.PatientName = patient_name
    if instance is None:
        del ds.InstanceNumber
    else:
        ds.InstanceNumber = instance
    if position is None:
        del ds.ImagePositionPatient
    else:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is None:
        del ds.ImageOrientationPatient
    else:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if modality != "CT":
        ds.Modality = modality
        sop_class = MR_IMAGE_STORAGE if modality == "MR" else "1.2.840.10008.5.1.4.1.1.7"
        ds.SOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPClassUID = sop_class
    return ds


def dataset_bytes(ds) -> bytes:
    return _generator().to_bytes(ds)


def ct_bytes(**kwargs) -> bytes:
    """`ct_dataset(**kwargs)` as a Part-10 file."""
    return dataset_bytes(ct_dataset(**kwargs))


@dataclass
class SliceFile:
    sop: str
    study: str
    series: str
    instance: int | None
    position: Sequence[float] | None
    data: bytes


def make_study(
    count: int,
    *,
    study: str | None = None,
    rows: int = 64,
    cols: int = 64,
    seed: int = 0,
    spacing: float = 5.0,
    order: Sequence[int] | None = None,
) -> list[SliceFile]:
    """`count` slices of one study; slice k lies at z = k * spacing, has
    InstanceNumber k + 1; returned in `order` (indexes) if given."""
    study = study or new_uid()
    series = study + ".1"
    files = []
    for k in range(count):
        sop = new_uid()
        position = (-125.0, -125.0, k * spacing)
        data = ct_bytes(study=study, series=series, sop=sop, instance=k + 1, position=position, rows=rows, cols=cols,
                        seed=seed * 1000 + k)
        files.append(SliceFile(sop, study, series, k + 1, position, data))
    if order is not None:
        files = [files[i] for i in order]
    return files


# --------------------------------------------------------------------------
# HTTP bodies


def multipart_related(
    parts: Iterable[bytes | tuple[bytes, dict[str, str] | None]],
    *,
    boundary: str | None = None,
    quote_boundary: bool = True,
    type_parameter: bool = True,
) -> tuple[str, bytes]:
    """A STOW-RS body: (Content-Type header value, body). A part is the file's
    bytes (sent with `Content-Type: application/dicom`) or (bytes, headers),
    headers None meaning no part headers at all."""
    boundary = boundary or f"ich-{uuid.uuid4()}"
    body = io.BytesIO()
    for part in parts:
        data, headers = (part, {"Content-Type": "application/dicom"}) if isinstance(part, (bytes, bytearray)) else part
        body.write(b"--" + boundary.encode() + b"\r\n")
        for name, value in (headers or {}).items():
            body.write(f"{name}: {value}\r\n".encode())
        body.write(b"\r\n")
        body.write(bytes(data))
        body.write(b"\r\n")
    body.write(b"--" + boundary.encode() + b"--\r\n")
    shown = f'"{boundary}"' if quote_boundary else boundary
    content_type = "multipart/related; " + ('type="application/dicom"; ' if type_parameter else "") + f"boundary={shown}"
    return content_type, body.getvalue()


def chunked(body: bytes, sizes: Sequence[int] = (4096,), *, extension: str = "", trailer: bytes = b"") -> bytes:
    """`body` in the chunked transfer coding; chunk sizes cycle through `sizes`.
    `extension` (e.g. ';name=value') is appended to every chunk size line and
    `trailer` (complete header lines) follows the last chunk."""
    out = io.BytesIO()
    offset, index = 0, 0
    while offset < len(body):
        size = min(sizes[index % len(sizes)], len(body) - offset)
        out.write(f"{size:x}{extension}\r\n".encode())
        out.write(body[offset : offset + size])
        out.write(b"\r\n")
        offset += size
        index += 1
    out.write(b"0\r\n" + trailer + b"\r\n")
    return out.getvalue()


def build_request(
    method: str,
    target: str,
    *,
    headers: Sequence[tuple[str, str]] | dict[str, str] = (),
    body: bytes | None = None,
    host: str = "127.0.0.1",
    content_length: bool = True,
) -> bytes:
    """Request bytes: the request line, Host, the headers in order, Content-Length
    (when there is a body, `content_length` is true and the headers have no
    Transfer-Encoding or Content-Length), a blank line, the body as given."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    names = {name.lower() for name, _ in items}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in items]
    if body is not None and content_length and not names & {"content-length", "transfer-encoding"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


# --------------------------------------------------------------------------
# Responses


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes = b""  # everything read for this response, head and body
    method: str = ""
    target: str = ""

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    @property
    def media_type(self) -> str | None:
        value = self.header("Content-Type")
        return value.split(";")[0].strip().lower() if value else None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def closes(self) -> bool:
        return any("close" in v.lower() for v in self.header_values("Connection"))

    def __repr__(self) -> str:
        body = self.body[:600].decode("utf-8", "replace")
        return f"<{self.method} {self.target} -> {self.status} {self.reason} {self.headers} {body!r}>"


class ConnectionClosed(ConnectionError):
    pass


class RawConnection:
    """One TCP connection; requests are bytes, responses are parsed incrementally."""

    def __init__(self, host: str, port: int, *, timeout: float = 60.0, recorder: list | None = None,
                 source: str | None = None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()
        self.host, self.port = host, port
        self.recorder = recorder
        self.eof = False

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Sends what the peer takes; False once it has reset or closed the connection."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _line(self) -> bytes:
        while True:
            index = self.buffer.find(b"\r\n")
            if index >= 0:
                line = bytes(self.buffer[:index])
                del self.buffer[: index + 2]
                return line
            if not self._fill():
                raise ConnectionClosed(f"connection closed in the middle of a line: {bytes(self.buffer[:200])!r}")

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise ConnectionClosed(f"connection closed after {len(self.buffer)} of {n} body bytes")
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_response(self, *, method: str = "GET", target: str = "", timeout: float = 60.0,
                      skip_informational: bool = True) -> Response:
        """The next response; 1xx responses are skipped unless skip_informational is false."""
        self.sock.settimeout(timeout)
        while True:
            consumed = bytearray()
            status_line = self._line()
            if not status_line and not self.buffer and self.eof:
                raise ConnectionClosed("connection closed before a response")
            match = re.match(rb"HTTP/1\.[01] (\d{3})(?: (.*))?$", status_line)
            if not match:
                raise AssertionError(f"bad status line {status_line!r}")
            status = int(match.group(1))
            reason = (match.group(2) or b"").decode("latin-1")
            headers: list[tuple[str, str]] = []
            consumed += status_line + b"\r\n"
            while True:
                line = self._line()
                consumed += line + b"\r\n"
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                assert name and name == name.strip(), f"bad header line {line!r}"
                headers.append((name, value.strip()))
            response = Response(status, reason, headers, b"", method=method, target=target)
            if 100 <= status < 200:
                response.raw = bytes(consumed)
                if self.recorder is not None:
                    self.recorder.append(response)
                if skip_informational:
                    continue
                return response
            body = b""
            encoding = (response.header("Transfer-Encoding") or "").lower()
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif "chunked" in encoding:
                parts = []
                while True:
                    size_line = self._line()
                    consumed += size_line + b"\r\n"
                    size = int(size_line.split(b";")[0].strip(), 16)
                    if size == 0:
                        while True:  # trailer section
                            line = self._line()
                            consumed += line + b"\r\n"
                            if not line:
                                break
                        break
                    parts.append(self._exactly(size))
                    assert self._exactly(2) == b"\r\n", "chunk not followed by CRLF"
                body = b"".join(parts)
            elif response.header("Content-Length") is not None:
                body = self._exactly(int(response.header("Content-Length")))
            else:
                while self._fill():
                    pass
                body = bytes(self.buffer)
                self.buffer.clear()
            response.body = body
            response.raw = bytes(consumed) + body
            if self.recorder is not None:
                self.recorder.append(response)
            return response

    def is_closed(self, timeout: float = 5.0) -> bool:
        """True when the peer closes (or resets) the connection within `timeout`
        and sends nothing more."""
        if self.buffer:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not data:
                return True
            self.buffer += data
            return False
        return False


# --------------------------------------------------------------------------
# The contract


SCHEMA_BASE = "urn:ich-triage:openapi"
JSON_MEDIA_TYPES = ("application/json", "application/problem+json", "application/dicom+json")
# Statuses any route may answer (openapi.yaml's table), with the component describing them.
ANY_ROUTE = {
    400: "/components/responses/BadRequest",
    404: "/components/responses/NotFound",
    405: "/components/responses/MethodNotAllowed",
    408: "/components/responses/RequestTimeout",
    413: "/components/responses/PayloadTooLarge",
    431: "/components/responses/HeaderTooLarge",
}


def _token(key: str) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


class Contract:
    """openapi.yaml as a response checker."""

    def __init__(self, path: Path = SPEC_PATH):
        import yaml
        from jsonschema import Draft202012Validator, FormatChecker
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self.spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        resource = Resource.from_contents(self.spec, default_specification=DRAFT202012)
        self._registry = Registry().with_resource(SCHEMA_BASE, resource)
        self._validator_class = Draft202012Validator
        self._format_checker = FormatChecker()
        self._validators: dict[str, Any] = {}
        self.templates = []
        for template in self.spec["paths"]:
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(template)) + "$"
            self.templates.append((re.compile(pattern), template))

    def validator(self, pointer: str):
        if pointer not in self._validators:
            self._validators[pointer] = self._validator_class(
                {"$ref": f"{SCHEMA_BASE}#{pointer}"}, registry=self._registry, format_checker=self._format_checker)
        return self._validators[pointer]

    def resolve(self, node: dict, pointer: str) -> tuple[dict, str]:
        while "$ref" in node:
            pointer = node["$ref"][1:]
            node = self.spec
            for part in pointer.split("/")[1:]:
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, pointer

    def template(self, path: str) -> str | None:
        for pattern, template in self.templates:
            if pattern.match(path):
                return template
        return None

    def schema_errors(self, pointer: str, value: Any) -> list[str]:
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                for e in self.validator(pointer).iter_errors(value)]

    def response_pointer(self, method: str, target: str, status: int) -> tuple[str | None, str | None]:
        """(pointer of the documented response, problem) for this request and status."""
        path = urlsplit(target).path
        template = self.template(path)
        method = "get" if method.upper() == "HEAD" else method.lower()
        if template is None:
            if status in (400, 404, 408, 413, 431):
                return ANY_ROUTE[status], None
            return None, f"{status} for a path openapi.yaml does not list (expected 404 or a protocol error)"
        item = self.spec["paths"][template]
        if method not in item:
            if status in (400, 405, 408, 413, 431):
                return ANY_ROUTE[status], None
            return None, f"{status} for {method.upper()} {template}, a method the path does not have (expected 405)"
        operation = item[method]
        base = f"/paths/{_token(template)}/{method}/responses"
        if str(status) in operation["responses"]:
            _, pointer = self.resolve(operation["responses"][str(status)], f"{base}/{status}")
            return pointer, None
        if status in (400, 408, 413, 431):
            return ANY_ROUTE[status], None
        return None, (f"{status} is not documented for {method.upper()} {template} "
                      f"(documented: {', '.join(operation['responses'])})")

    def check(self, response: Response, method: str | None = None, target: str | None = None) -> list[str]:
        """Contract violations of one response (empty when it conforms)."""
        method = method or response.method
        target = target or response.target
        pointer, problem = self.response_pointer(method, target, response.status)
        if problem:
            return [problem]
        spec_response, pointer = self.resolve({"$ref": "#" + pointer}, pointer)
        errors = []
        for name, header in spec_response.get("headers", {}).items():
            header, _ = self.resolve(header, "")
            value = response.header(name)
            if value is None:
                if header.get("required"):
                    errors.append(f"missing header {name}")
                continue
            schema = header.get("schema", {})
            if schema.get("type") == "integer" and not re.fullmatch(r"\d+", value):
                errors.append(f"header {name}: {value!r} is not an integer")
            if "pattern" in schema and not re.search(schema["pattern"], value):
                errors.append(f"header {name}: {value!r} does not match {schema['pattern']}")
        content = spec_response.get("content", {})
        if response.status == 204 or response.status == 304:
            if response.body:
                errors.append(f"{response.status} with a body")
            return errors
        if not content:
            return errors
        media_type = response.media_type
        if media_type not in content:
            return errors + [f"Content-Type {response.header('Content-Type')!r}, documented: {list(content)}"]
        if method.upper() == "HEAD":
            if response.body:
                errors.append("HEAD response with a body")
            return errors
        if media_type in JSON_MEDIA_TYPES:
            try:
                value = response.json()
            except ValueError as error:
                return errors + [f"body is not JSON ({error}): {response.body[:200]!r}"]
            schema_pointer = f"{pointer}/content/{_token(media_type)}/schema"
            errors += self.schema_errors(schema_pointer, value)
            if media_type == "application/problem+json" and isinstance(value, dict):
                if value.get("status") != response.status:
                    errors.append(f"problem status {value.get('status')} != HTTP status {response.status}")
        elif media_type.startswith("text/"):
            try:
                response.body.decode("utf-8")
            except UnicodeDecodeError:
                errors.append("text body is not UTF-8")
        return errors

    def assert_conforms(self, response: Response, method: str | None = None, target: str | None = None) -> None:
        errors = self.check(response, method, target)
        assert not errors, f"response does not match openapi.yaml: {errors}\n{response!r}"


_contract: Contract | None = None


def contract() -> Contract:
    global _contract
    if _contract is None:
        _contract = Contract()
    return _contract


def assert_problem(response: Response, status: int, slug: str | None = None) -> dict:
    """An RFC 9457 problem with this status (and slug), valid against Problem."""
    assert response.status == status, repr(response)
    assert response.media_type == "application/problem+json", repr(response)
    problem = response.json()
    errors = contract().schema_errors("/components/schemas/Problem", problem)
    assert not errors, f"not a Problem: {errors}: {problem}"
    assert problem["status"] == status, problem
    if slug is not None:
        assert problem["type"] == PROBLEM_PREFIX + slug, problem
    return problem


# --------------------------------------------------------------------------
# Client


class Client:
    """Requests over fresh connections (or one kept-alive connection, `connection()`),
    each response checked against openapi.yaml unless validate=False."""

    def __init__(self, host: str, port: int, token: str | None = None, *, recorder: list | None = None,
                 validate: bool = True):
        self.host, self.port, self.token = host, port, token
        self.recorder = recorder if recorder is not None else []
        self.validate = validate

    def with_token(self, token: str | None) -> "Client":
        return Client(self.host, self.port, token, recorder=self.recorder, validate=self.validate)

    def connection(self, timeout: float = 60.0) -> RawConnection:
        return RawConnection(self.host, self.port, timeout=timeout, recorder=self.recorder)

    def headers_for(self, headers: dict[str, str] | Sequence[tuple[str, str]] | None, token: str | None | bool):
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        token = self.token if token is True else token
        if token and not any(name.lower() == "authorization" for name, _ in items):
            items.append(("Authorization", f"Bearer {token}"))
        return items

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        *,
        headers: dict[str, str] | Sequence[tuple[str, str]] | None = None,
        token: str | None | bool = True,
        content_type: str | None = None,
        chunk_sizes: Sequence[int] | None = None,
        timeout: float = 120.0,
        validate: bool | None = None,
    ) -> Response:
        items = self.headers_for(headers, token)
        if content_type:
            items.append(("Content-Type", content_type))
        payload = body
        if chunk_sizes is not None and body is not None:
            items.append(("Transfer-Encoding", "chunked"))
            payload = chunked(body, chunk_sizes)
        items.append(("Connection", "close"))
        with self.connection(timeout) as conn:
            conn.send(build_request(method, target, headers=items, body=payload))
            response = conn.read_response(method=method, target=target, timeout=timeout)
        if validate if validate is not None else self.validate:
            contract().assert_conforms(response)
        return response

    def get(self, target: str, **kwargs) -> Response:
        return self.request("GET", target, **kwargs)

    def post_instance(self, data: bytes, **kwargs) -> Response:
        kwargs.setdefault("content_type", "application/dicom")
        return self.request("POST", "/v1/instances", data, **kwargs)

    def stow(self, parts, study: str | None = None, *, boundary_kwargs: dict | None = None, **kwargs) -> Response:
        content_type, body = multipart_related(parts, **(boundary_kwargs or {}))
        kwargs.setdefault("content_type", content_type)
        target = "/dicomweb/studies" + (f"/{study}" if study else "")
        return self.request("POST", target, body, **kwargs)

    def study(self, uid: str, wait: float | None = None, **kwargs) -> Response:
        return self.get(f"/v1/studies/{uid}" + (f"?wait={wait:g}" if wait is not None else ""), **kwargs)

    def wait_complete(self, uid: str, timeout: float = 120.0) -> dict:
        """Long-polls until the study is complete; returns its JSON."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            response = self.study(uid, wait=max(0, min(30, round(remaining))))
            assert response.status == 200, repr(response)
            study = response.json()
            if study["status"] == "complete" or remaining <= 0:
                assert study["status"] == "complete", f"study {uid} not complete after {timeout} s: {study}"
                return study

    def wait_instance_done(self, sop: str, timeout: float = 120.0, interval: float = 0.1) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            response = self.get(f"/v1/instances/{sop}")
            assert response.status == 200, repr(response)
            instance = response.json()
            if instance["status"] != "queued":
                return instance
            assert time.monotonic() < deadline, f"instance {sop} still queued after {timeout} s"
            time.sleep(interval)


# --------------------------------------------------------------------------
# The server process


LISTENING = re.compile(r"listening on ([0-9A-Fa-f.:]+):(\d+)")


class Server:
    """One `ich-server serve` process with its own data directory."""

    def __init__(
        self,
        data_dir: Path,
        model: Path,
        *,
        args: Sequence[str] = (),
        binary: Path | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.data_dir = Path(data_dir)
        self.model = Path(model)
        self.args = list(args)
        self.binary = binary or server_binary()
        self.log_path = log_path or self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.host = "127.0.0.1"
        self.recorder: list[Response] = []
        self._stdout_lines: list[str] = []
        self._log = None
        self.starts = 0
        self.tokens: dict[str, str] = {}

    # ---- lifecycle

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ICH_")}
        env.update(self.extra_env)
        return env

    def start(self, *, ready: bool = True, timeout: float = 300.0) -> "Server":
        problem = binary_problem(self.binary)
        if problem:
            raise ServiceError(problem)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._log.write(f"==== start {self.starts}: {' '.join(self.args)}\n".encode())
        self._log.flush()
        command = [str(self.binary), "serve", "--host", self.host, "--port", "0", "--data-dir", str(self.data_dir),
                   "--model", str(self.model), *self.args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log, env=self.environment(),
                                        cwd=str(REPO_ROOT))
        self.starts += 1
        port_found = threading.Event()

        def pump(stream, lines):
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                lines.append(line)
                match = LISTENING.search(line)
                if match and not port_found.is_set():
                    self.port = int(match.group(2))
                    port_found.set()
            stream.close()

        self._stdout_lines = []
        threading.Thread(target=pump, args=(self.process.stdout, self._stdout_lines), daemon=True).start()
        deadline = time.monotonic() + 60
        while not port_found.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise ServiceError(f"ich-server did not print 'listening on': exit {self.process.returncode}\n"
                                   f"stdout: {self._stdout_lines}\nstderr: {self.log_tail()}")
        if ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceError(f"ich-server exited with {self.process.returncode} before ready:\n{self.log_tail()}")
            try:
                last = self.client(validate=False).get("/readyz", token=None, timeout=10)
                if last.status == 200:
                    return
            except OSError as error:
                last = error
            time.sleep(0.1)
        raise ServiceError(f"/readyz not 200 after {timeout} s: {last!r}\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signals the process and waits; returns its exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
                raise ServiceError(f"ich-server did not exit within {timeout} s of signal {sig}:\n{self.log_tail()}")
        code = self.process.returncode
        if self._log:
            self._log.close()
            self._log = None
        return code

    def kill(self) -> int:
        return self.stop(signal.SIGKILL, timeout=30)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.stop()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ---- use

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, token: str | None = None, *, validate: bool = True) -> Client:
        return Client(self.host, self.port, token, recorder=self.recorder, validate=validate)

    def token_command(self, *args: str) -> subprocess.CompletedProcess:
        """`ich-server token ARGS...` on this server's data directory."""
        command = [str(self.binary), "token", *args, "--data-dir", str(self.data_dir)]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=self.environment(), cwd=str(REPO_ROOT))

    def token(self, scope: str, name: str | None = None) -> str:
        """`ich-server token create` on this server's data directory (which it creates if needed)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [str(self.binary), "token", "create", "--scope", scope, "--data-dir", str(self.data_dir)]
        if name:
            command += ["--name", name]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=self.environment(),
                                cwd=str(REPO_ROOT))
        if result.returncode != 0:
            raise ServiceError(f"token create --scope {scope} failed ({result.returncode}): {result.stderr}")
        token = result.stdout.strip()
        assert token and "\n" not in token and token == result.stdout.rstrip("\n"), \
            f"token create printed more than the token: {result.stdout!r}"
        return token

    def log_text(self) -> str:
        if self._log:
            self._log.flush()
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = 4000) -> str:
        return self.log_text()[-n:]
