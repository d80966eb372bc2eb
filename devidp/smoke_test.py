"""Smoke test for the dev OIDC provider (devidp/server.mjs).

Run from the repository root:

    /work/main/.venv/bin/python devidp/smoke_test.py

Starts the server on a free port with a throwaway client key pair, drives the
authorization code flow (PKCE + private_key_jwt) with `requests`, and checks the
ID token claims, error paths, PAR and RP-initiated logout. Exits non-zero on failure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

HERE = Path(__file__).resolve().parent
USERS = json.loads((HERE / "users.json").read_text())["users"]
CLIENT_ID = "pjd-portal"
RP_BASES = ["http://127.0.0.1:8000", "http://localhost:8001"]
REDIRECT_URI = f"{RP_BASES[0]}/oidc/callback/"
PORTAL_SCOPE = (
    "openid profile helseid://scopes/identity/pid helseid://scopes/identity/security_level "
    "helseid://scopes/identity/assurance_level helseid://scopes/hpr/hpr_number"
)

FAILURES: list[str] = []


def check(cond: bool, what: str) -> None:
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    if not cond:
        FAILURES.append(what)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Server:
    def __init__(self, port: int, env: dict[str, str]):
        self.port = port
        self.env = {**os.environ, **env, "IDP_PORT": str(port)}
        self.proc: subprocess.Popen | None = None
        self.issuer = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, node from PATH on purpose
            ["node", str(HERE / "server.mjs")],  # noqa: S607
            env=self.env,
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.proc.stdout.read()}")
            try:
                requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=1)
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("server did not start in time")

    def stop(self) -> str:
        if self.proc is None:
            return ""
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.proc = None
        return out


class Client:
    def __init__(self, issuer: str, private_key, kid: str):
        self.issuer = issuer
        self.key = private_key
        self.kid = kid
        self.config = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=5).json()

    def assertion(self, aud: str | None = None, **overrides) -> str:
        now = int(time.time())
        claims = {
            "iss": CLIENT_ID,
            "sub": CLIENT_ID,
            "aud": aud or self.config["token_endpoint"],
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 60,
        }
        claims.update(overrides)
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def auth_params(self, **extra) -> tuple[dict, str]:
        verifier = b64url(secrets.token_bytes(32))
        params = {
            "client_id": CLIENT_ID,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": PORTAL_SCOPE,
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": b64url(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        params.update(extra)
        return params, verifier

    def follow(self, s: requests.Session, resp: requests.Response) -> requests.Response:
        """Follow redirects inside the IdP; stop at the portal's callback (not running)."""
        for _ in range(10):
            if resp.status_code not in (301, 302, 303, 307, 308):
                return resp
            loc = urljoin(resp.url, resp.headers["Location"])
            if loc.startswith(REDIRECT_URI) or any(loc.startswith(b) for b in RP_BASES):
                resp.final_location = loc  # type: ignore[attr-defined]
                return resp
            resp = s.get(loc, allow_redirects=False, timeout=5)
        raise RuntimeError("too many redirects")

    def start_login(self, s: requests.Session, **extra):
        params, verifier = self.auth_params(**extra)
        resp = s.get(self.config["authorization_endpoint"], params=params, allow_redirects=False, timeout=5)
        return self.follow(s, resp), params, verifier

    def submit(
        self,
        s: requests.Session,
        page: requests.Response,
        username: str,
        password: str,
        button: str = "login",
    ) -> requests.Response:
        m = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert m, "login form not found"
        action = urljoin(page.url, unescape(m.group(1)))
        if button == "abort":
            action = action.rsplit("/", 1)[0] + "/abort"
        resp = s.post(
            action, data={"username": username, "password": password}, allow_redirects=False, timeout=5
        )
        return self.follow(s, resp)

    def token(self, code: str, verifier: str, aud: str | None = None) -> requests.Response:
        return requests.post(
            self.config["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": self.assertion(aud),
            },
            timeout=5,
        )

    def verify_id_token(self, id_token: str, nonce: str) -> dict:
        jwks = requests.get(self.config["jwks_uri"], timeout=5).json()
        kid = jwt.get_unverified_header(id_token)["kid"]
        key = next(k for k in jwks["keys"] if k["kid"] == kid)
        claims = jwt.decode(
            id_token, jwt.PyJWK(key).key, algorithms=["RS256"], audience=CLIENT_ID, issuer=self.issuer
        )
        assert claims["nonce"] == nonce, "nonce mismatch"
        return claims

    def login_and_get_claims(self, username: str, **extra) -> tuple[dict, dict, requests.Session]:
        s = requests.Session()
        page, params, verifier = self.start_login(s, **extra)
        assert page.status_code == 200 and 'id="username"' in page.text, "no login page"
        resp = self.submit(s, page, username, "test")
        loc = getattr(resp, "final_location", None)
        assert loc and loc.startswith(REDIRECT_URI), f"no redirect to callback: {resp.status_code}"
        q = parse_qs(urlparse(loc).query)
        assert q["state"] == [params["state"]], "state mismatch"
        assert q.get("iss") == [self.issuer], "iss missing from authorization response"
        tok = self.token(q["code"][0], verifier)
        assert tok.status_code == 200, f"token endpoint: {tok.status_code} {tok.text}"
        body = tok.json()
        return self.verify_id_token(body["id_token"], params["nonce"]), body, s


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="devidp-smoke-"))
    try:
        return run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> int:  # noqa: PLR0915 - one linear scenario
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pub_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    pub_jwk.update(kid="smoke-client-1", use="sig", alg="RS256")
    (tmp / "client_jwks.json").write_text(json.dumps({"keys": [pub_jwk]}))
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

    # 0. Missing client JWKS -> clear error, non-zero exit
    print("missing client JWKS")
    r = subprocess.run(  # noqa: S603
        ["node", str(HERE / "server.mjs")],  # noqa: S607
        cwd=HERE,
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "IDP_PORT": str(free_port()),
            "IDP_CLIENT_JWKS": str(tmp / "nope.json"),
            "IDP_SIGNING_KEY_FILE": str(tmp / "signing-key.json"),
        },
        timeout=15,
    )
    check(
        r.returncode != 0 and "client JWKS file not found" in r.stderr,
        f"exits {r.returncode} with: {r.stderr.strip().splitlines()[-2:]}",
    )

    port = free_port()
    server = Server(
        port,
        {
            "IDP_CLIENT_JWKS": str(tmp / "client_jwks.json"),
            "IDP_SIGNING_KEY_FILE": str(tmp / "signing-key.json"),
            "RP_BASES": ",".join(RP_BASES),
        },
    )
    server.start()
    try:
        c = Client(server.issuer, pem, "smoke-client-1")
        cfg = c.config

        print("discovery")
        check(cfg["issuer"] == server.issuer, f"issuer = {cfg['issuer']}")
        check(
            "pushed_authorization_request_endpoint" in cfg,
            f"PAR endpoint = {cfg.get('pushed_authorization_request_endpoint')}",
        )
        check(
            "S256" in cfg["code_challenge_methods_supported"],
            f"code_challenge_methods_supported = {cfg['code_challenge_methods_supported']}",
        )
        check(
            "private_key_jwt" in cfg["token_endpoint_auth_methods_supported"],
            f"token_endpoint_auth_methods_supported = {cfg['token_endpoint_auth_methods_supported']}",
        )
        check(set(PORTAL_SCOPE.split()) <= set(cfg["scopes_supported"]), "portal scopes supported")
        for k in ("authorization_endpoint", "token_endpoint", "jwks_uri", "end_session_endpoint"):
            print(f"       {k}: {cfg.get(k)}")

        print("jwks")
        jwks = requests.get(cfg["jwks_uri"], timeout=5).json()
        kids = [k.get("kid") for k in jwks["keys"]]
        check(
            len(jwks["keys"]) == 1
            and jwks["keys"][0]["kty"] == "RSA"
            and kids[0]
            and "d" not in jwks["keys"][0],
            f"one public RSA key, kid={kids[0]}",
        )

        print("login page")
        s = requests.Session()
        page, _, _ = c.start_login(s)
        check(page.status_code == 200, f"status {page.status_code}")
        check("<title>HelseID (testmiljø)</title>" in page.text, "title")
        check('name="username"' in page.text and 'id="username"' in page.text, "username field")
        check('name="password"' in page.text and 'id="password"' in page.text, "password field")
        check(">Logg inn</button>" in page.text and ">Avbryt</button>" in page.text, "buttons")
        check(all(f"<code>{u}</code>" in page.text for u in USERS), "user table lists all users")

        print("wrong password")
        resp = c.submit(s, page, "fastlege", "feil")
        check(
            resp.status_code in (200, 401) and "Feil brukernavn eller passord" in resp.text,
            f"password 'feil' refused (HTTP {resp.status_code})",
        )
        resp = c.submit(s, page, "finnes-ikke", "test")
        check("Feil brukernavn eller passord" in resp.text, "unknown user refused")
        resp = c.submit(s, page, "<script>x</script>", "feil")
        check(
            "<script>x</script>" not in resp.text and "&lt;script&gt;" in resp.text, "username echoed escaped"
        )

        print("code flow: fastlege")
        claims, body, sess = c.login_and_get_claims("fastlege")
        print("       ID token claims:")
        for k, v in claims.items():
            print(f"         {k}: {v}")
        u = USERS["fastlege"]
        check(claims["sub"] != u["pid"] and len(claims["sub"]) == 43, "sub is a pseudonym, not pid")
        check(
            claims["name"] == u["name"]
            and claims["given_name"] == u["given_name"]
            and claims["family_name"] == u["family_name"],
            "name claims",
        )
        check(claims.get("helseid://claims/identity/pid") == u["pid"], "pid claim")
        check(claims.get("helseid://claims/identity/security_level") == "4", "security_level '4'")
        check(claims.get("helseid://claims/identity/assurance_level") == "high", "assurance_level high")
        check(claims.get("helseid://claims/hpr/hpr_number") == u["hpr"], "hpr_number claim")
        check(
            claims.get("helseid://claims/client/claims/orgnr_parent") == u["orgnr_parent"]
            and claims.get("helseid://claims/client/claims/orgnr_child") == u["orgnr_child"],
            "orgnr claims",
        )
        check(
            body.get("token_type") == "Bearer" and body.get("expires_in", 0) <= 300,
            f"access token, expires_in={body.get('expires_in')}",
        )
        sub1 = claims["sub"]
        ui = requests.get(
            cfg["userinfo_endpoint"], timeout=5, headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        ui_claims = ui.json() if ui.status_code == 200 else {}
        check(
            ui.status_code == 200
            and ui_claims.get("sub") == sub1
            and all(
                ui_claims.get(k) == v
                for k, v in claims.items()
                if k.startswith(("helseid://", "name", "given_name", "family_name"))
            ),
            f"userinfo ({cfg['userinfo_endpoint']}) -> {ui.status_code}, same claims",
        )

        print("code flow: fastlege again (sub stable)")
        claims2, _, _ = c.login_and_get_claims("fastlege")
        check(claims2["sub"] == sub1, "same sub")

        print("code flow: uten-hpr")
        claims, _, _ = c.login_and_get_claims("uten-hpr")
        check("helseid://claims/hpr/hpr_number" not in claims, "no hpr_number claim")
        check(claims["sub"] != sub1, "different sub per user")

        print("code flow: niva3")
        claims, _, _ = c.login_and_get_claims("niva3")
        check(claims.get("helseid://claims/identity/security_level") == "3", "security_level '3'")
        check(
            claims.get("helseid://claims/identity/assurance_level") == "substantial",
            "assurance_level substantial",
        )

        print("client assertion aud = issuer, second redirect base")
        s2 = requests.Session()
        params, verifier = c.auth_params(redirect_uri=f"{RP_BASES[1]}/oidc/callback/")
        resp = c.follow(
            s2, s2.get(cfg["authorization_endpoint"], params=params, allow_redirects=False, timeout=5)
        )
        resp = c.submit(s2, resp, "legevakt", "test")
        loc = resp.final_location
        check(loc.startswith(f"{RP_BASES[1]}/oidc/callback/?"), f"redirect to {loc.split('?')[0]}")
        code = parse_qs(urlparse(loc).query)["code"][0]
        tok = requests.post(
            cfg["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": f"{RP_BASES[1]}/oidc/callback/",
                "code_verifier": verifier,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": c.assertion(aud=server.issuer),
            },
            timeout=5,
        )
        check(tok.status_code == 200, f"token with aud=issuer: HTTP {tok.status_code}")

        print("negative token requests")
        s3 = requests.Session()
        page, params, verifier = c.start_login(s3)
        resp = c.submit(s3, page, "fastlege", "test")
        code = parse_qs(urlparse(resp.final_location).query)["code"][0]
        bad = c.token(code, b64url(secrets.token_bytes(32)))
        check(
            bad.status_code == 400 and bad.json().get("error") == "invalid_grant",
            f"wrong code_verifier -> {bad.status_code} {bad.json().get('error')}",
        )
        # oidc-provider does not burn the code on a PKCE failure; a correct retry works ...
        good = c.token(code, verifier)
        check(good.status_code == 200, f"correct code_verifier afterwards -> {good.status_code}")
        # ... but a code is single use once redeemed.
        again = c.token(code, verifier)
        check(
            again.status_code == 400 and again.json().get("error") == "invalid_grant",
            f"code reuse -> {again.status_code} {again.json().get('error')}",
        )
        page, params, verifier = c.start_login(s3, prompt="login")
        check(
            page.status_code == 200 and 'id="password"' in page.text,
            "prompt=login shows the login form despite a session",
        )
        resp = c.submit(s3, page, "fastlege", "test")
        code = parse_qs(urlparse(resp.final_location).query)["code"][0]
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(
            {
                "iss": CLIENT_ID,
                "sub": CLIENT_ID,
                "aud": cfg["token_endpoint"],
                "jti": str(uuid.uuid4()),
                "exp": int(time.time()) + 60,
            },
            other,
            algorithm="RS256",
            headers={"kid": "smoke-client-1"},
        )
        bad = requests.post(
            cfg["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
                "client_assertion": forged,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            },
            timeout=5,
        )
        check(
            bad.status_code == 401 and bad.json().get("error") == "invalid_client",
            f"assertion signed by another key -> {bad.status_code} {bad.json().get('error')}",
        )
        tok = c.token(code, verifier)
        check(tok.status_code == 200, "same code still usable with a valid assertion")
        no_pkce, _ = c.auth_params()
        del no_pkce["code_challenge"], no_pkce["code_challenge_method"]
        r = requests.get(cfg["authorization_endpoint"], params=no_pkce, allow_redirects=False, timeout=5)
        err = parse_qs(urlparse(r.headers.get("Location", "")).query).get("error")
        check(r.status_code in (302, 303) and err == ["invalid_request"], f"no PKCE -> error {err}")

        print("cancel (Avbryt)")
        s4 = requests.Session()
        page, params, _ = c.start_login(s4)
        resp = c.submit(s4, page, "", "", button="abort")
        q = parse_qs(urlparse(getattr(resp, "final_location", "")).query)
        check(
            q.get("error") == ["access_denied"] and q.get("state") == [params["state"]],
            f"error={q.get('error')} description={q.get('error_description')}",
        )

        print("PAR")
        s5 = requests.Session()
        params, verifier = c.auth_params()
        par = requests.post(
            cfg["pushed_authorization_request_endpoint"],
            data={
                **params,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": c.assertion(aud=server.issuer),
            },
            timeout=5,
        )
        check(
            par.status_code == 201 and "request_uri" in par.json(), f"PAR -> {par.status_code} {par.json()}"
        )
        resp = c.follow(
            s5,
            s5.get(
                cfg["authorization_endpoint"],
                params={"client_id": CLIENT_ID, "request_uri": par.json()["request_uri"]},
                allow_redirects=False,
                timeout=5,
            ),
        )
        resp = c.submit(s5, resp, "sykepleier", "test")
        q = parse_qs(urlparse(resp.final_location).query)
        tok = c.token(q["code"][0], verifier)
        check(tok.status_code == 200, f"token after PAR: HTTP {tok.status_code}")
        claims = c.verify_id_token(tok.json()["id_token"], params["nonce"])
        check(claims["name"] == USERS["sykepleier"]["name"], "PAR ID token for sykepleier")

        print("RP-initiated logout")
        _, body, sess = c.login_and_get_claims("fastlege")
        end = sess.get(
            cfg["end_session_endpoint"],
            params={
                "id_token_hint": body["id_token"],
                "client_id": CLIENT_ID,
                "post_logout_redirect_uri": f"{RP_BASES[0]}/logget-ut/",
                "state": "xyz",
            },
            allow_redirects=False,
            timeout=5,
        )
        check(end.status_code == 200 and ">Logg ut</button>" in end.text, "logout confirm page")
        m = re.search(r'action="([^"]+)"><input type="hidden" name="xsrf" value="([^"]+)"', end.text)
        resp = sess.post(
            m.group(1), data={"xsrf": m.group(2), "logout": "yes"}, allow_redirects=False, timeout=5
        )
        loc = resp.headers.get("Location", "")
        check(
            resp.status_code in (302, 303)
            and loc.startswith(f"{RP_BASES[0]}/logget-ut/")
            and "state=xyz" in loc,
            f"redirect after logout -> {loc}",
        )
        page, _, _ = c.start_login(sess)
        check(page.status_code == 200 and 'id="password"' in page.text, "login required again after logout")

    finally:
        out = server.stop()
    print("server output:")
    print("  " + "\n  ".join(out.strip().splitlines()))
    check("devidp listening on http://127.0.0.1:" in out, "start-up log line")

    print("signing key persists across restarts")
    server.start()
    try:
        kid2 = requests.get(f"{server.issuer}/jwks", timeout=5).json()["keys"][0]["kid"]
    finally:
        server.stop()
    check(kid2 == kids[0], f"kid after restart = {kid2}")

    if FAILURES:
        print(f"\n{len(FAILURES)} check(s) FAILED:")
        for f in FAILURES:
            print(f"  - {f}")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
