import jwt
import pytest

from esign_connector.api import keys


@pytest.fixture(scope="module")
def pem():
    return keys.generate_private_key_pem()


def test_public_jwk_shape_and_stable_kid(pem):
    jwk = keys.public_jwk(pem)
    assert set(jwk) == {"kty", "e", "n", "use", "alg", "kid"}
    assert (jwk["kty"], jwk["e"], jwk["use"], jwk["alg"]) == ("RSA", "AQAB", "sig", "RS256")
    assert jwk["kid"] == keys.public_jwk(pem)["kid"] == keys.jwk_thumbprint(jwk)
    assert keys.public_jwk(pem, kid="mine")["kid"] == "mine"


def test_jwk_verifies_a_token_signed_with_the_private_key(pem):
    token = jwt.encode({"sub": "x"}, pem, algorithm="RS256")
    public = jwt.algorithms.RSAAlgorithm.from_jwk(keys.public_jwk(pem))
    assert jwt.decode(token, public, algorithms=["RS256"]) == {"sub": "x"}


def test_short_keys_are_refused():
    with pytest.raises(ValueError):
        keys.generate_private_key_pem(1024)


def test_thumbprint_matches_rfc7638_example():
    # RFC 7638 section 3.1
    jwk = {
        "kty": "RSA", "e": "AQAB",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
             "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
             "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
             "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert keys.jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
