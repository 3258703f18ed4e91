"""Bearer API keys with roles: dealership, customer, operator.

401 says "who are you?" (no key, or a key we do not know); 403 says "we know
you, and this is not yours" (wrong role, or another customer's resource).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ..settings import ApiKey
from .problems import Problem

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="caas"'}


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    subject: str

    def may_act_for(self, customer_id: str) -> bool:
        return self.role == "operator" or (self.role == "customer" and self.subject == customer_id)


def authenticate(authorization: str | None, keys: dict[str, ApiKey]) -> Principal:
    if not authorization:
        raise Problem(401, "Authentication required", "send `Authorization: Bearer <api key>`",
                      kind="unauthenticated", headers=CHALLENGE)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Authentication required", "the Authorization header must be `Bearer <api key>`",
                      kind="unauthenticated", headers=CHALLENGE)
    # Compare against every key in constant time: no timing hint about which prefix matched.
    # surrogatepass: a header's undecodable bytes arrive as lone surrogates, which a plain
    # encode() refuses (a 500); encoded, they match no key.
    presented = token.strip().encode("utf-8", "surrogatepass")
    found = None
    for key, grant in keys.items():
        if hmac.compare_digest(key.encode(), presented):
            found = grant
    if found is None:
        raise Problem(401, "Unknown API key", "this API key is not valid", kind="unauthenticated",
                      headers=CHALLENGE)
    return Principal(found.role, found.subject)


def require_role(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise Problem(403, "Forbidden", f"this operation needs the role {' or '.join(roles)}; "
                      f"your key has the role {principal.role}", kind="forbidden")


def require_owner(principal: Principal, customer_id: str) -> None:
    if not principal.may_act_for(customer_id):
        raise Problem(403, "Forbidden", "this resource belongs to another customer", kind="forbidden")
