"""A scripted session of the official Python client (postgrest) against a
Ferrobase project loaded with server/tests/it/rest/peers.rs's schema.

usage: python postgrest_py_session.py PROJECT_URL ANON_KEY USER_A_TOKEN USER_B_TOKEN
Exits non-zero (with the failed check) on the first mismatch.
"""

import sys
import traceback

from postgrest import SyncPostgrestClient
from postgrest.exceptions import APIError

if len(sys.argv) != 5:
    print(__doc__, file=sys.stderr)
    sys.exit(2)
url, anon_key, user_a, user_b = sys.argv[1:]


def client(token):
    return SyncPostgrestClient(
        f"{url}/rest/v1", headers={"apikey": anon_key, "Authorization": f"Bearer {token}"}
    )


anon = client(anon_key)
a = client(anon_key).auth(user_a)
b = client(user_b)
checks = 0


def check(fn):
    global checks
    try:
        fn()
        checks += 1
    except Exception:
        print(f"FAILED: {fn.__name__}", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
    return fn


def api_error(call):
    try:
        call()
    except APIError as e:
        return e
    raise AssertionError("expected an APIError")


@check
def anon_select_and_filters():
    r = anon.from_("tags").select("id,name").order("id").execute()
    assert r.data == [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}, {"id": 3, "name": "blue"}], r.data
    r = anon.from_("tags").select("id").in_("id", [1, 2, 3]).ilike("name", "%e%").neq("id", 3).order("id", desc=True).execute()
    assert r.data == [{"id": 2}, {"id": 1}], r.data
    r = anon.from_("tags").select("id").or_("id.eq.1,name.eq.blue").not_.eq("id", 1).execute()
    assert r.data == [{"id": 3}], r.data
    r = anon.from_("tags").select("id").gte("id", 2).lt("id", 3).execute()
    assert r.data == [{"id": 2}], r.data


@check
def anon_sees_no_todos():
    r = anon.from_("todos").select("*", count="exact").execute()
    assert r.data == [] and r.count == 0, (r.data, r.count)
    e = api_error(lambda: anon.from_("todos").insert({"title": "anon", "list_id": 1}).execute())
    assert e.code == "42501", e


@check
def user_inserts_and_counts():
    r = a.from_("todos").insert({"title": "py one", "list_id": 1}).execute()
    assert [row["title"] for row in r.data] == ["py one"], r.data
    rows = [{"title": "py two", "list_id": 1}, {"title": "py three", "list_id": 2, "done": True}]
    # As with PostgREST, a missing key is NULL unless missing=default is asked for.
    e = api_error(lambda: a.from_("todos").insert(rows).execute())
    assert e.code == "23502", e
    r = a.from_("todos").insert(rows, default_to_null=False).execute()
    assert len(r.data) == 2, r.data
    r = a.from_("todos").select("id", count="exact").limit(1).execute()
    assert r.count == 5 and len(r.data) == 1, (r.count, r.data)


@check
def embedding_shows_only_own_rows():
    r = a.from_("lists").select("name, todos(title)").eq("id", 1).single().execute()
    titles = sorted(t["title"] for t in r.data["todos"])
    assert titles == ["a1", "a2", "py one", "py two"], titles
    r = a.from_("todos").select("title, list:lists(name)").eq("title", "py three").single().execute()
    assert r.data == {"title": "py three", "list": {"name": "work"}}, r.data


@check
def user_a_cannot_touch_b():
    b_id = b.from_("todos").select("id").single().execute().data["id"]
    assert a.from_("todos").select("id").eq("id", b_id).execute().data == []
    assert a.from_("todos").update({"title": "hacked"}).eq("id", b_id).execute().data == []
    assert a.from_("todos").delete().eq("id", b_id).execute().data == []
    e = api_error(lambda: a.from_("todos").upsert({"id": b_id, "title": "stolen"}).execute())
    assert e.code == "42501", e
    assert b.from_("todos").select("title").single().execute().data == {"title": "b1"}


@check
def update_delete_upsert():
    r = a.from_("todos").update({"done": True}).eq("title", "py one").execute()
    assert [row["done"] for row in r.data] == [True], r.data
    r = a.from_("todos").delete().eq("title", "py two").execute()
    assert [row["title"] for row in r.data] == ["py two"], r.data
    r = a.from_("tags").upsert({"id": 1, "name": "crimson"}).execute()
    assert r.data == [{"id": 1, "name": "crimson"}], r.data
    r = a.from_("tags").upsert({"id": 9, "name": "green"}, on_conflict="name", ignore_duplicates=True).execute()
    assert r.data == [], r.data


@check
def rpc_calls():
    assert anon.rpc("add", {"a": 1, "b": 2}).execute().data == 3
    assert anon.rpc("add", {"a": 5, "b": 6}, get=True).execute().data == 11
    r = a.rpc("my_todos", {}).eq("done", True).order("title").execute()
    assert [row["title"] for row in r.data] == ["py one", "py three"], r.data


@check
def single_and_maybe_single():
    e = api_error(lambda: anon.from_("tags").select("*").single().execute())
    assert e.code == "PGRST116", e
    r = anon.from_("tags").select("*").eq("id", 999).maybe_single().execute()
    assert r is None or r.data is None, r
    r = anon.from_("tags").select("name").eq("id", 3).maybe_single().execute()
    assert r.data == {"name": "blue"}, r.data


@check
def errors_keep_postgrest_shape():
    e = api_error(lambda: anon.from_("nope").select("*").execute())
    assert e.code == "PGRST205", e
    e = api_error(lambda: anon.from_("tags").insert({"id": 3, "name": "again"}).execute())
    assert e.code == "23505", e
    e = api_error(lambda: anon.from_("tags").select("nope").execute())
    assert e.code == "42703", e
    e = api_error(lambda: anon.rpc("fail_it", {}).execute())
    assert (e.code, e.message, e.details, e.hint) == ("P0001", "boom", "det", "hin"), e


print(f"postgrest-py: {checks} checks passed")
