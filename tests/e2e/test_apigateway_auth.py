"""API Gateway authorizers over plain HTTP: JWT (issuer discovery and JWKS served by a local
HTTP server, RS256 tokens signed here in pure Python, audiences, expiry, scopes) and Lambda
REQUEST authorizers (simple and IAM-policy responses, identity sources, result caching,
context passed to the integration)."""
import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apigw_e2e import ECHO_SRC, call
from nimbus_e2e import create_function, make_zip, unique_name

# A 2048-bit RSA test key (generated once with openssl for these tests; signs nothing else).
JWT_N = int(
    "b4ac41bb6f4035ad24b6470434161f4d0f8181c3687c7a0f51877c078a550b386fbbfbe39b8cc38fd1348929a9425df3"
    "5a15f02ee9f7a67d0bf17b3c860a2cd472ecfb3f66ec21e8c7aaca7b180f250c43e07f2709b4c0e87f4a2649451e586a"
    "e7a3b0342f0591ad1234aef56d0268a9cae39147bdc65dd0fbe11a570f65947355cd0b9a55f2a632448d60ccaa3d56c5"
    "5d40bc8012951617bbb113d9fa3cff5d4d4abd5d7f87c599ecb70d2f3c1a311e7d0cca6d91620f534661edc148e4075b"
    "e99a5363104c69f2016e2ab6b620d2d6f9fb098242e7c6c20f53179ae5a278549b66b633c865564993b6e2c049b445db"
    "d40d930bc3b5c8a8cc0dcacc99d62bd5", 16)
JWT_D = int(
    "9b1dc97c4312685889cc7541b14bccfe919c2997662878cdee11844b1fae7993b0053ff334f95b18296566ddd33e9d00"
    "470d241e78819c4f2a91de5c78385984e2517ee4a5ae2b997a290843e6c419eab886bb4efe3ba7394b0fe90f14689940"
    "da34e4733e6bbef14dfad810f3d112f5b40642bfcab9cf3ce859660e99097d5e9193f584803a5718dae7f8b1aeefe4c4"
    "6047d3c4ae4f95c1a0c39d65c3044ebd45510919658820c5036cc078ae4a2c67b1514c5999a37af34c3f67aaa31e372c"
    "67474c01f2543c74119526b9cdb242b9297d46455221f020c6e1f8b6cd41e541446cff65d68f00d387ff3f0aba7755bf"
    "a8fb802734bd471d64ec4088bff3741", 16)
JWT_E = 65537
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt(claims: dict, kid: str = "k1") -> str:
    """RS256 (RSASSA-PKCS1-v1_5 + SHA-256), computed with Python's big integers."""
    k = (JWT_N.bit_length() + 7) // 8
    signing_input = (b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode()) + "." +
                     b64url(json.dumps(claims).encode()))
    t = SHA256_DIGEST_INFO + hashlib.sha256(signing_input.encode()).digest()
    em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
    sig = pow(int.from_bytes(em, "big"), JWT_D, JWT_N).to_bytes(k, "big")
    return signing_input + "." + b64url(sig)


@pytest.fixture(scope="module")
def issuer():
    """An OpenID issuer on a loopback port: discovery document and JWKS."""
    state = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/.well-known/openid-configuration":
                doc = {"issuer": state["url"], "jwks_uri": state["url"] + "/jwks"}
            elif self.path == "/jwks":
                n = JWT_N.to_bytes((JWT_N.bit_length() + 7) // 8, "big")
                doc = {"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
                                 "n": b64url(n), "e": b64url(JWT_E.to_bytes(3, "big"))}]}
            else:
                self.send_response(404)
                self.end_headers()
                return
            out = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield state["url"]
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def echo_fn(server):
    name = unique_name("auth-echo")
    return create_function(server.lam, name, make_zip({"lambda_function.py": ECHO_SRC}))["FunctionArn"]


def test_jwt_authorizer(server, issuer, echo_fn):
    gw = server.client("apigatewayv2")
    api_id = gw.create_api(Name=unique_name("jwt"), ProtocolType="HTTP")["ApiId"]
    iid = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo_fn,
                                PayloadFormatVersion="2.0")["IntegrationId"]
    auth_id = gw.create_authorizer(ApiId=api_id, Name="jwt", AuthorizerType="JWT",
                                   IdentitySource=["$request.header.Authorization"],
                                   JwtConfiguration={"Issuer": issuer, "Audience": ["my-api"]})["AuthorizerId"]
    target = f"integrations/{iid}"
    gw.create_route(ApiId=api_id, RouteKey="GET /read", Target=target, AuthorizationType="JWT",
                    AuthorizerId=auth_id)
    gw.create_route(ApiId=api_id, RouteKey="GET /admin", Target=target, AuthorizationType="JWT",
                    AuthorizerId=auth_id, AuthorizationScopes=["admin"])
    gw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    now = int(time.time())
    good = {"iss": issuer, "aud": "my-api", "sub": "user-1", "exp": now + 300, "scope": "read write"}

    r = call(server, api_id, "GET", "/read")
    assert (r.status, r.json()) == (401, {"message": "Unauthorized"})
    r = call(server, api_id, "GET", "/read", headers={"Authorization": "Bearer " + sign_jwt(good)})
    assert r.status == 200, r
    jwt_ctx = r.json()["requestContext"]["authorizer"]["jwt"]
    assert jwt_ctx["claims"]["sub"] == "user-1" and jwt_ctx["scopes"] == ["read", "write"]
    for bad in [dict(good, exp=now - 10), dict(good, aud="other"), dict(good, iss="http://evil")]:
        r = call(server, api_id, "GET", "/read", headers={"Authorization": sign_jwt(bad)})
        assert r.status == 401, bad
    tampered = sign_jwt(good)[:-6] + "AAAAAA"
    assert call(server, api_id, "GET", "/read", headers={"Authorization": tampered}).status == 401
    assert call(server, api_id, "GET", "/read", headers={"Authorization": sign_jwt(good, kid="k2")}).status == 401
    # Scopes per route: a valid token without the scope is forbidden.
    r = call(server, api_id, "GET", "/admin", headers={"Authorization": sign_jwt(good)})
    assert (r.status, r.json()) == (403, {"message": "Forbidden"})
    r = call(server, api_id, "GET", "/admin", headers={"Authorization": sign_jwt(dict(good, scope="admin"))})
    assert r.status == 200


AUTHORIZER_SRC = r'''
import time
def handler(event, context):
    token = (event.get("headers") or {}).get("authorization", "")
    if "policy" in event.get("routeArn", "") or "policy" in event.get("methodArn", ""):
        effect = "Allow" if token == "allow" else "Deny"
        return {"principalId": "user-9", "context": {"via": "policy"},
                "policyDocument": {"Version": "2012-10-17", "Statement": [
                    {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event.get("routeArn") or event.get("methodArn")}]}}
    if token == "garbage":
        return {"nope": True}
    return {"isAuthorized": token == "allow", "context": {"user": "u-" + token, "at": time.time_ns(),
            "identity": event.get("identitySource")}}
'''


def test_lambda_request_authorizer_simple_policy_and_cache(server, echo_fn):
    lam, gw = server.lam, server.client("apigatewayv2")
    auth_fn = create_function(lam, unique_name("authz"), make_zip({"lambda_function.py": AUTHORIZER_SRC}))["FunctionArn"]
    api_id = gw.create_api(Name=unique_name("lauth"), ProtocolType="HTTP")["ApiId"]
    iid = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo_fn,
                                PayloadFormatVersion="2.0")["IntegrationId"]
    iid1 = gw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=echo_fn,
                                 PayloadFormatVersion="1.0")["IntegrationId"]
    simple = gw.create_authorizer(ApiId=api_id, Name="simple", AuthorizerType="REQUEST", AuthorizerUri=auth_fn,
                                  AuthorizerPayloadFormatVersion="2.0", EnableSimpleResponses=True,
                                  IdentitySource=["$request.header.Authorization"],
                                  AuthorizerResultTtlInSeconds=300)["AuthorizerId"]
    nocache = gw.create_authorizer(ApiId=api_id, Name="nocache", AuthorizerType="REQUEST", AuthorizerUri=auth_fn,
                                   AuthorizerPayloadFormatVersion="2.0", EnableSimpleResponses=True,
                                   IdentitySource=["$request.header.Authorization"],
                                   AuthorizerResultTtlInSeconds=0)["AuthorizerId"]
    policy = gw.create_authorizer(ApiId=api_id, Name="policy", AuthorizerType="REQUEST", AuthorizerUri=auth_fn,
                                  AuthorizerPayloadFormatVersion="2.0", EnableSimpleResponses=False,
                                  IdentitySource=["$request.header.Authorization"])["AuthorizerId"]
    for key, auth, integ in [("GET /s", simple, iid), ("GET /n", nocache, iid), ("GET /policy", policy, iid),
                             ("GET /v1", simple, iid1)]:
        gw.create_route(ApiId=api_id, RouteKey=key, Target=f"integrations/{integ}", AuthorizationType="CUSTOM",
                        AuthorizerId=auth)
    gw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

    assert call(server, api_id, "GET", "/s").status == 401  # identity source missing
    r = call(server, api_id, "GET", "/s", headers={"Authorization": "deny"})
    assert (r.status, r.json()) == (403, {"message": "Forbidden"})
    r = call(server, api_id, "GET", "/s", headers={"Authorization": "allow"})
    assert r.status == 200, r
    ctx = r.json()["requestContext"]["authorizer"]["lambda"]
    assert ctx["user"] == "u-allow" and ctx["identity"] == ["allow"]
    # Cached by identity value for the TTL: the authorizer is not called again.
    again = call(server, api_id, "GET", "/s", headers={"Authorization": "allow"}).json()
    assert again["requestContext"]["authorizer"]["lambda"]["at"] == ctx["at"]
    n1 = call(server, api_id, "GET", "/n", headers={"Authorization": "allow"}).json()
    n2 = call(server, api_id, "GET", "/n", headers={"Authorization": "allow"}).json()
    assert n1["requestContext"]["authorizer"]["lambda"]["at"] != n2["requestContext"]["authorizer"]["lambda"]["at"]
    # A malformed authorizer answer is a 500.
    r = call(server, api_id, "GET", "/n", headers={"Authorization": "garbage"})
    assert (r.status, r.json()) == (500, {"message": "Internal Server Error"})
    # IAM policy responses.
    r = call(server, api_id, "GET", "/policy", headers={"Authorization": "allow"})
    assert r.status == 200, r
    auth_ctx = r.json()["requestContext"]["authorizer"]
    assert auth_ctx["lambda"]["via"] == "policy" and auth_ctx["principalId"] == "user-9"
    assert call(server, api_id, "GET", "/policy", headers={"Authorization": "nope"}).status == 403
    # Payload 1.0 integrations see the context flat.
    r = call(server, api_id, "GET", "/v1", headers={"Authorization": "allow"})
    assert r.json()["requestContext"]["authorizer"]["user"] == "u-allow"
