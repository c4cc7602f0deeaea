"""Drives the official Python client (supabase-auth) against a Ferrobase project.

Env: AUTH_URL (.../auth/v1), ANON_KEY, SERVICE_KEY. Exits non-zero on the
first failed expectation; prints one line per step.
"""
import os
import sys
import time

from supabase_auth import SyncGoTrueAdminAPI, SyncGoTrueClient
from supabase_auth.errors import AuthApiError

url = os.environ["AUTH_URL"]
anon = os.environ["ANON_KEY"]
service = os.environ["SERVICE_KEY"]


def expect(cond, what, detail=None):
    if not cond:
        print(f"FAILED: {what} {detail!r}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


client = SyncGoTrueClient(
    url=url,
    headers={"apikey": anon, "Authorization": f"Bearer {anon}"},
    auto_refresh_token=False,
    persist_session=True,
)
email = f"py-{int(time.time() * 1000)}@example.com"

res = client.sign_up({"email": email, "password": "py-password-1", "options": {"data": {"lang": "py"}}})
expect(res.session is not None and res.user.email == email, "sign_up returns a session", res)
expect(res.user.user_metadata.get("lang") == "py", "sign_up stores metadata", res.user)

try:
    client.sign_in_with_password({"email": email, "password": "nope"})
    expect(False, "wrong password raises")
except AuthApiError as e:
    expect(e.code == "invalid_credentials" and e.status == 400, "wrong password is invalid_credentials", (e.code, e.status))

res = client.sign_in_with_password({"email": email, "password": "py-password-1"})
expect(res.session is not None, "sign_in_with_password")
first = res.session

user = client.get_user()
expect(user is not None and user.user.email == email, "get_user", user)

res = client.refresh_session()
expect(res.session is not None and res.session.refresh_token != first.refresh_token, "refresh_session rotates")

res = client.update_user({"data": {"theme": "dark"}, "password": "py-password-2"})
expect(res.user.user_metadata.get("theme") == "dark", "update_user", res.user)

admin = SyncGoTrueAdminAPI(url=url, headers={"apikey": service, "Authorization": f"Bearer {service}"})
users = admin.list_users()
expect(any(u.email == email for u in users), "admin.list_users")

client.sign_out()
expect(client.get_session() is None, "sign_out clears the session")

res = client.sign_in_with_password({"email": email, "password": "py-password-2"})
expect(res.session is not None, "sign in with the updated password")
admin.delete_user(res.user.id)
print("ALL OK")
