"""OIDC bearer tokens: signature, issuer, audience, expiry, algorithms, JWKS rotation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from joserfc.jwk import ECKey, RSAKey

from ironhold.config.security import JwksConfig, JwtConfig
from ironhold.core.errors import AuthenticationError, ConfigError
from ironhold.identity.jwks import JwksSource
from ironhold.identity.tokens import OidcVerifier
from tests.idp import IdentityProvider, tamper


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


def verifier(idp: IdentityProvider, tmp_path: Path, **jwt: object) -> OidcVerifier:
    idp.write_jwks(tmp_path / "jwks.json")
    config = JwtConfig.model_validate({
        "issuer": idp.issuer, "audience": "ironhold", "jwks": {"file": "jwks.json"},
        "admin_groups": ["ops"], **jwt})
    source = JwksSource(config.jwks, tmp_path)
    source.load_now()
    return OidcVerifier(config, source)


async def test_a_valid_token_becomes_a_user_principal(idp: IdentityProvider,
                                                      tmp_path: Path) -> None:
    oidc = verifier(idp, tmp_path)
    principal = await oidc.verify(idp.token(scope="openid models:chat,embed tools:search"))
    assert (principal.id, principal.kind, principal.name) == ("user:alice", "user", "Alice")
    assert principal.tenant == "acme" and principal.groups == ("staff",)
    assert principal.scopes.models == frozenset({"chat", "embed"}) and not principal.admin
    assert principal.scopes.tools == frozenset({"search"})
    assert principal.expires_at is not None and principal.expires_at > time.time()
    admin = await oidc.verify(idp.token(sub="bob", groups=["staff", "ops"]))
    assert admin.admin and admin.scopes.models is None  # no models scope: every model group


async def test_claims_mapping_is_configurable(idp: IdentityProvider, tmp_path: Path) -> None:
    oidc = verifier(idp, tmp_path, claims={"subject": "email", "tenant": "org", "groups": "roles",
                                           "name": "preferred_username"})
    principal = await oidc.verify(idp.token(email="carol@acme.test", org="acme-eu",
                                            roles="a b", preferred_username="carol"))
    assert principal.id == "user:carol@acme.test" and principal.tenant == "acme-eu"
    assert principal.groups == ("a", "b") and principal.name == "carol"


@pytest.mark.parametrize("overrides, code", [
    ({"iss": "https://evil.test"}, "invalid_token"),
    ({"aud": "someone-else"}, "invalid_token"),
    ({"exp": int(time.time()) - 3600}, "expired_token"),
    ({"exp": None}, "invalid_token"),
    ({"sub": None}, "invalid_token"),
    ({"nbf": int(time.time()) + 3600}, "invalid_token"),
    ({"iat": int(time.time()) + 3600}, "invalid_token"),
])
async def test_registered_claims_are_enforced(idp: IdentityProvider, tmp_path: Path,
                                              overrides: dict[str, object], code: str) -> None:
    oidc = verifier(idp, tmp_path)
    with pytest.raises(AuthenticationError) as err:
        await oidc.verify(idp.token(**overrides))  # type: ignore[arg-type]
    assert err.value.code == code


async def test_clock_skew_is_tolerated_within_the_leeway(idp: IdentityProvider,
                                                        tmp_path: Path) -> None:
    oidc = verifier(idp, tmp_path, leeway="30s")
    assert await oidc.verify(idp.token(exp=int(time.time()) - 10, nbf=int(time.time()) + 10))
    with pytest.raises(AuthenticationError):
        await oidc.verify(idp.token(exp=int(time.time()) - 60))
    with pytest.raises(ValueError):  # a large leeway would extend every token's life
        JwtConfig.model_validate({"issuer": "x", "audience": "y", "jwks": {"file": "j"},
                                  "leeway": "10m"})


async def test_forged_tokens_are_refused(idp: IdentityProvider, tmp_path: Path) -> None:
    oidc = verifier(idp, tmp_path)
    stranger = RSAKey.generate_key(2048, parameters={"kid": idp.key.kid})  # type: ignore[arg-type]
    for forged in (tamper(idp.token()), idp.unsigned(), idp.hs256_with_public_key(),
                   idp.token(key=stranger), idp.token()[:-4] + "AAAA"):
        with pytest.raises(AuthenticationError):
            await oidc.verify(forged)


async def test_only_configured_algorithms_are_accepted(idp: IdentityProvider,
                                                      tmp_path: Path) -> None:
    ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
    idp.keys.append(ec)
    oidc = verifier(idp, tmp_path, algorithms=["RS256"])
    assert await oidc.verify(idp.token(key=idp.keys[0]))
    with pytest.raises(AuthenticationError) as err:
        await oidc.verify(idp.token(key=ec))
    assert "algorithm" in err.value.message
    with pytest.raises(ValueError):
        JwtConfig.model_validate({"issuer": "x", "audience": "y", "jwks": {"file": "j"},
                                  "algorithms": ["HS256"]})


async def test_a_rotated_jwks_file_is_picked_up(idp: IdentityProvider, tmp_path: Path) -> None:
    oidc = verifier(idp, tmp_path)
    old = idp.token()
    idp.rotate("rsa-2")
    new = idp.token()
    with pytest.raises(AuthenticationError):
        await oidc.verify(new)  # not yet published
    idp.write_jwks(tmp_path / "jwks.json")
    assert (await oidc.verify(new)).id == "user:alice"  # unknown kid: re-read at once
    await asyncio.sleep(1.1)  # past the once-a-second file check
    with pytest.raises(AuthenticationError):
        await oidc.verify(old)  # the old key was withdrawn


async def test_a_jwks_url_is_cached_and_refreshed_on_rotation(idp: IdentityProvider,
                                                             tmp_path: Path) -> None:
    url = idp.serve()
    config = JwtConfig.model_validate({"issuer": idp.issuer, "audience": "ironhold",
                                       "jwks": {"url": url, "min_refresh": "0.2s"}})
    oidc = OidcVerifier(config, JwksSource(config.jwks, tmp_path))
    try:
        for _ in range(5):
            assert await oidc.verify(idp.token())
        assert idp.fetches == 1  # cached
        idp.rotate("rsa-2", keep_old=True)
        await asyncio.sleep(0.25)  # past min_refresh
        assert await oidc.verify(idp.token())  # unknown kid: fetched again
        assert idp.fetches == 2
        # Made-up key ids cannot make the gateway hammer the provider.
        bogus = RSAKey.generate_key(2048, parameters={"kid": "nope"})
        await asyncio.sleep(0.25)
        for _ in range(5):
            with pytest.raises(AuthenticationError):
                await oidc.verify(idp.token(key=bogus))
        assert idp.fetches == 3
    finally:
        await oidc.jwks.close()


def test_a_bad_jwks_file_stops_start_up(tmp_path: Path) -> None:
    for content, problem in (("{", "not a usable JWKS"),
                             ('{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "symmetric"),
                             ('{"keys": []}', "non-empty")):
        (tmp_path / "jwks.json").write_text(content)
        source = JwksSource(JwksConfig(file=Path("jwks.json")), tmp_path)
        with pytest.raises(ConfigError) as err:
            source.load_now()
        assert problem in err.value.message
    with pytest.raises(ConfigError):
        JwksSource(JwksConfig(file=Path("missing.json")), tmp_path).load_now()
    private = IdentityProvider().key.as_dict(private=True)
    (tmp_path / "jwks.json").write_text(__import__("json").dumps({"keys": [private]}))
    with pytest.raises(ConfigError) as err:
        JwksSource(JwksConfig(file=Path("jwks.json")), tmp_path).load_now()
    assert "private" in err.value.message
