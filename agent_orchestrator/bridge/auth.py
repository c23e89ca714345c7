"""Who is calling the bridge, and which project they may touch.

With ``AO_BRIDGE_AUTH=jwt`` a caller sends ``Authorization: Bearer <token>``: an HS256 token
signed with ``AO_BRIDGE_JWT_SECRET``, or one signed by a key of ``AO_BRIDGE_JWT_JWKS_FILE``
(found by its ``kid``). It must not be expired (``exp`` is required) and names the caller's
project in a claim (``project`` by default; ``*`` for every project). With
``AO_BRIDGE_AUTH=api_keys`` a caller sends ``X-API-Key: <key>``, a key of the JSON file
``AO_BRIDGE_API_KEYS_FILE``. A missing or invalid credential is 401; one without a project is
403. The caller's project travels to the service as the ``Project-Scope`` header, which
confines the request to that project (see ``handlers.scope`` in the service).
"""

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import Request as HttpRequest

from agent_orchestrator.bridge.problems import ProblemError
from agent_orchestrator.bridge.settings import AuthMode, BridgeSettings, weakness
from agent_orchestrator.contracts.errors import ErrorCode

ALL_PROJECTS = "*"
API_KEY_HEADER = "X-API-Key"
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA")


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; ``project`` None means every project."""

    name: str
    project: str | None


def _unauthorized(message: str, scheme: str) -> ProblemError:
    return ProblemError(401, ErrorCode.UNAUTHORIZED, message, headers={"WWW-Authenticate": scheme})


def _project_of(value: Any, name: str) -> str | None:
    if value == ALL_PROJECTS:
        return None
    if not isinstance(value, str) or not value:
        raise ProblemError(403, ErrorCode.FORBIDDEN, f"{name} is not allowed any project")
    return value


class JwtCallers:
    """Bearer tokens: HS256 with a shared secret, or asymmetric keys from a JWKS file."""

    scheme = 'Bearer realm="agent-orchestrator"'

    def __init__(self, settings: BridgeSettings) -> None:
        self._settings = settings
        self._secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self._jwks: jwt.PyJWKSet | None = None
        if settings.jwt_jwks_file is not None:
            self._jwks = jwt.PyJWKSet.from_json(settings.jwt_jwks_file.read_text())

    def _key(self, token: str) -> tuple[Any, list[str]]:
        if self._secret is not None:
            return self._secret, ["HS256"]
        assert self._jwks is not None
        kid = jwt.get_unverified_header(token).get("kid")
        for key in self._jwks.keys:
            if key.key_id == kid:
                return key.key, [key.algorithm_name] if key.algorithm_name else [*JWT_ALGORITHMS]
        raise _unauthorized(f"no key {kid!r} in the JWKS", self.scheme)

    def caller(self, token: str) -> Caller:
        """The caller a token proves, or 401/403."""
        s = self._settings
        try:
            key, algorithms = self._key(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=s.jwt_audience,
                issuer=s.jwt_issuer,
                options={"require": ["exp"], "verify_aud": s.jwt_audience is not None},
            )
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"the bearer token is not valid: {exc}", self.scheme) from exc
        name = str(claims.get("sub") or "token")
        return Caller(name, _project_of(claims.get(s.jwt_project_claim), name))


class ApiKeyCallers:
    """API keys from a JSON file; only their SHA-256 is kept in memory."""

    scheme = f'ApiKey header="{API_KEY_HEADER}"'

    def __init__(self, settings: BridgeSettings) -> None:
        assert settings.api_keys_file is not None
        entries: dict[str, Any] = json.loads(settings.api_keys_file.read_text())
        self._keys: dict[str, tuple[str, Any]] = {}
        for key, entry in entries.items():
            why = weakness(key)
            if why:
                raise ValueError(f"an API key in {settings.api_keys_file} is refused: {why}")
            name = str(entry.get("name") or f"key {len(self._keys) + 1}")
            self._keys[_digest(key)] = (name, entry.get("project"))
        if not self._keys:
            raise ValueError(f"{settings.api_keys_file} holds no API key")

    def caller(self, key: str) -> Caller:
        """The caller a key proves, or 401/403."""
        found = self._keys.get(_digest(key))
        if found is None:
            raise _unauthorized("unknown API key", self.scheme)
        name, project = found
        return Caller(name, _project_of(project, name))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


Authenticate = Callable[..., Awaitable[None]]


def authentication(settings: BridgeSettings) -> Authenticate | None:
    """A FastAPI dependency that sets ``request.state.caller`` (and documents the scheme in
    OpenAPI), or None when authentication is off."""
    if settings.auth is AuthMode.JWT:
        tokens = JwtCallers(settings)
        bearer = HTTPBearer(auto_error=False, description="A JWT naming the caller's project.")

        async def by_token(
            request: HttpRequest,
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> None:
            if credentials is None:
                raise _unauthorized("send Authorization: Bearer <token>", tokens.scheme)
            request.state.caller = tokens.caller(credentials.credentials)

        return by_token
    if settings.auth is AuthMode.API_KEYS:
        keys = ApiKeyCallers(settings)
        header = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)

        async def by_key(request: HttpRequest, key: Annotated[str | None, Depends(header)]) -> None:
            if not key:
                raise _unauthorized(f"send {API_KEY_HEADER}: <key>", keys.scheme)
            request.state.caller = keys.caller(key)

        return by_key
    return None


def caller_of(request: HttpRequest) -> Caller | None:
    """The authenticated caller of a request (None when authentication is off)."""
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, Caller) else None
