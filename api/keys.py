"""RSA key pairs and their public JWK, for providers that authenticate us by a signed JWT.

Autenti (JWT-bearer grant) and DocuSign (JWT grant) both want an RSA key whose public half the admin
registers at the provider. We generate it here so the private key never leaves Odoo.
"""
import base64
import functools
import hashlib
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

MIN_KEY_BITS = 2048


def _b64url_uint(value):
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def generate_private_key_pem(bits=MIN_KEY_BITS):
    """A new RSA private key, PKCS#8 PEM, unencrypted (it is stored in an admin-only field)."""
    if bits < MIN_KEY_BITS:
        raise ValueError(f"RSA keys shorter than {MIN_KEY_BITS} bits are refused")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_private_key(pem):
    key = serialization.load_pem_private_key(pem.encode("ascii") if isinstance(pem, str) else pem, None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    if key.key_size < MIN_KEY_BITS:
        raise ValueError(f"RSA keys shorter than {MIN_KEY_BITS} bits are refused")
    return key


@functools.lru_cache(maxsize=16)
def load_private_key_cached(pem):
    """:func:`load_private_key`, once per PEM: loading validates the RSA key, which takes ~0.1 s."""
    return load_private_key(pem)


def public_jwk(private_pem, kid=None):
    """The public JWK of a private key: ``kty, e, n, use=sig, alg=RS256, kid``.

    Without an explicit ``kid`` the RFC 7638 thumbprint is used, which is stable for the key.
    """
    numbers = load_private_key(private_pem).public_key().public_numbers()
    jwk = {"kty": "RSA", "e": _b64url_uint(numbers.e), "n": _b64url_uint(numbers.n)}
    jwk.update({"use": "sig", "alg": "RS256", "kid": kid or jwk_thumbprint(jwk)})
    return jwk


def jwk_thumbprint(jwk):
    """RFC 7638 SHA-256 thumbprint of an RSA JWK, base64url without padding."""
    canonical = json.dumps({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}, separators=(",", ":"),
                           sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def public_pem(private_pem):
    """The public key as PEM (DocuSign's panel accepts the PEM form)."""
    return load_private_key(private_pem).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
