"""The Outreach simulator over real HTTP: paging, keyset, filters, include, fields, schema, auth."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl, urlsplit

from bridge.sandbox.outreach_query import parse_ts

from .conftest import World

VEHICLES = "/api/v2/customObjects/vehicles"


async def _all_pages(world: World, url: str) -> tuple[list[dict], list[str]]:
    records, urls = [], []
    while url:
        urls.append(url)
        status, body, _ = await world.o_get(url)
        assert status == 200, body
        records += body["data"]
        url = body["links"].get("next")
    return records, urls


async def test_links_next_carries_every_parameter_and_ends(world: World) -> None:
    query = "?page[size]=7&sort=updatedAt&count=false&filter[electric]=true,false&fields[vehicles]=vehicle_name"
    records, urls = await _all_pages(world, world.sandbox.outreach_url + VEHICLES + query)
    assert len(records) == 60 and len({r["id"] for r in records}) == 60
    assert len(urls) == 9
    for url in urls[1:]:
        params = dict(parse_qsl(urlsplit(url).query))
        assert params["page[size]"] == "7" and params["sort"] == "updatedAt" and params["count"] == "false"
        assert params["filter[electric]"] == "true,false" and params["fields[vehicles]"] == "vehicle_name"
        assert json.loads(base64.b64decode(params["page[after]"]))  # keyset [updatedAt, id]
    assert records[0]["attributes"].keys() == {"vehicle_name"}


async def test_keyset_is_stable_across_equal_updated_at(world: World) -> None:
    records, _ = await _all_pages(world, world.sandbox.outreach_url + VEHICLES + "?page[size]=3&sort=updatedAt")
    keys = [(parse_ts(r["attributes"]["updatedAt"]), r["id"]) for r in records]
    assert keys == sorted(keys) and len(set(keys)) == 60
    stamps = [k[0] for k in keys]
    assert max(stamps.count(s) for s in stamps) >= 5  # the seed's batches of 7 ties span pages of 3


async def test_record_updated_mid_listing_reappears_later(world: World) -> None:
    status, body, _ = await world.o_get(VEHICLES + "?page[size]=10&sort=updatedAt")
    first_id = body["data"][0]["id"]
    world.sandbox.outreach.update("vehicles", first_id, color="gold")
    rest, _ = await _all_pages(world, body["links"]["next"])
    assert [r["id"] for r in rest].count(first_id) == 1 and rest[-1]["id"] == first_id
    assert rest[-1]["attributes"]["color"] == "gold"


async def test_meta_count_default_and_count_false(world: World) -> None:
    _, body, _ = await world.o_get(VEHICLES + "?page[size]=5")
    assert body["meta"] == {"count": 60, "count_truncated": False} and body["links"]["first"].startswith("http://127.0.0.1")
    _, body, _ = await world.o_get(VEHICLES + "?page[size]=5&count=false")
    assert "count" not in body["meta"]


async def test_page_size_limits_and_offset_paging_refused(world: World) -> None:
    for query in ("page[size]=1001", "page[size]=0", "page[offset]=10", "page[after]=bm9wZQ=="):
        status, body, _ = await world.o_get(f"{VEHICLES}?{query}")
        assert status == 400 and body["errors"][0]["id"] == "validationError", query
    status, body, _ = await world.o_get(f"{VEHICLES}?page[size]=1000")
    assert status == 200 and "next" not in body["links"]


async def test_filters_ranges_lists_and_nulls(world: World) -> None:
    _, body, _ = await world.o_get("/api/v2/customObjects/vehicle_brands?filter[founded]=1900..1940&page[size]=100")
    founded = sorted(r["attributes"]["founded"] for r in body["data"])
    assert founded and all(1900 <= f <= 1940 for f in founded)
    _, body, _ = await world.o_get("/api/v2/customObjects/vehicle_brands?filter[founded]=neginf..1900")
    seeded = [world.sandbox.outreach.get("vehicle_brands", i)["attributes"]["founded"] for i in world.sandbox.outreach.ids("vehicle_brands")]
    assert sorted(r["attributes"]["founded"] for r in body["data"]) == sorted(f for f in seeded if f <= 1900) != []
    _, body, _ = await world.o_get("/api/v2/customObjects/vehicle_brands?filter[name]=DMC,Tesla")
    assert sorted(r["attributes"]["name"] for r in body["data"]) == ["DMC", "Tesla"]
    _, nulls, _ = await world.o_get(VEHICLES + "?filter[main_driver][id]=__null__&page[size]=100")
    _, notnulls, _ = await world.o_get(VEHICLES + "?filter[main_driver][id]=__notnull__&page[size]=100")
    assert len(nulls["data"]) + len(notnulls["data"]) == 60 and nulls["data"]
    assert all(r["relationships"]["main_driver"]["data"] is None for r in nulls["data"])


async def test_updated_at_filter_precision_and_new_syntax(world: World) -> None:
    records, _ = await _all_pages(world, world.sandbox.outreach_url + VEHICLES + "?page[size]=100&sort=updatedAt")
    pivot = records[30]["attributes"]["updatedAt"]  # µs precision
    status, body, _ = await world.o_get(f"{VEHICLES}?filter[updatedAt]={pivot}..inf")
    assert status == 400 and "precision" in body["errors"][0]["detail"]
    ms = pivot[:23] + "Z"
    expected = [r["id"] for r in records if parse_ts(r["attributes"]["updatedAt"]) >= parse_ts(ms)]
    _, body, _ = await world.o_get(f"{VEHICLES}?filter[updatedAt]={ms}..inf&sort=updatedAt&page[size]=100")
    assert [r["id"] for r in body["data"]] == expected
    _, body, _ = await world.o_get(f"{VEHICLES}?newFilterSyntax=true&filter[updatedAt][gte]={ms}&sort=updatedAt&page[size]=100")
    assert [r["id"] for r in body["data"]] == expected


async def test_relationship_filters_by_id_and_display_name(world: World) -> None:
    out = world.sandbox.outreach
    dmc = out.ids_where("vehicle_brands", "name", {"DMC"})
    (dmc_id,) = dmc
    expected = {i for i in out.ids("vehicles") if out.get("vehicles", i)["relationships"]["brand"]["data"]["id"] == dmc_id}
    _, by_name, _ = await world.o_get(VEHICLES + "?filter[brand][name]=DMC&page[size]=100")
    _, by_id, _ = await world.o_get(f"{VEHICLES}?filter[brand][id]={dmc_id}&page[size]=100")
    assert expected and {r["id"] for r in by_name["data"]} == expected == {r["id"] for r in by_id["data"]}
    status, body, _ = await world.o_get(VEHICLES + "?filter[brand][country]=Sweden")
    assert status == 400


async def test_sort_descending_with_keyset(world: World) -> None:
    records, _ = await _all_pages(world, world.sandbox.outreach_url + VEHICLES + "?sort=-color,updatedAt&page[size]=8")
    keys = [(r["attributes"]["color"], parse_ts(r["attributes"]["updatedAt"])) for r in records]
    assert len(records) == 60 and [k[0] for k in keys] == sorted((k[0] for k in keys), reverse=True)
    assert all(a[1] <= b[1] for a, b in zip(keys, keys[1:], strict=False) if a[0] == b[0])


async def test_include_and_sparse_fieldsets(world: World) -> None:
    query = "?include=brand,main_driver.account&fields[vehicle_brands]=name&fields[vehicles]=vehicle_name,brand&page[size]=10"
    status, body, _ = await world.o_get(VEHICLES + query)
    assert status == 200
    types = {i["type"] for i in body["included"]}
    assert types == {"vehicle_brands", "prospect", "account"}
    assert all(i["attributes"].keys() == {"name"} for i in body["included"] if i["type"] == "vehicle_brands")
    assert all(r["attributes"].keys() == {"vehicle_name"} and r["relationships"].keys() == {"brand"} for r in body["data"])
    brand_ids = {r["relationships"]["brand"]["data"]["id"] for r in body["data"]}
    assert brand_ids == {i["id"] for i in body["included"] if i["type"] == "vehicle_brands"}
    status, body, _ = await world.o_get(VEHICLES + "?include=brand.owner")
    assert status == 400 and "one level" in body["errors"][0]["detail"]
    status, body, _ = await world.o_get(f"{VEHICLES}/1?include=main_driver")
    assert status == 200 and body["data"]["id"] == 1


async def test_standard_types_have_their_real_attribute_names(world: World) -> None:
    _, body, _ = await world.o_get("/api/v2/prospects?page[size]=1")
    prospect = body["data"][0]
    assert prospect["type"] == "prospect" and isinstance(prospect["attributes"]["emails"], list)
    assert prospect["relationships"]["account"]["data"]["type"] == "account"
    _, body, _ = await world.o_get(f"/api/v2/prospects?filter[emails]={prospect['attributes']['emails'][0]}")
    assert [p["id"] for p in body["data"]] == [prospect["id"]]


async def test_schema_with_and_without_auth(world: World) -> None:
    status, anon, _ = await world.o_get("/api/v2/schema", headers={})
    assert status == 200 and anon["$schema"].startswith("http://json-schema.org/draft-07/hyper-schema")
    assert "prospect" in anon["definitions"] and "vehicles" not in anon["definitions"]
    _, authed, _ = await world.o_get("/api/v2/schema")
    updated = authed["definitions"]["vehicles"]["definitions"]["updatedAt"]
    assert updated["filterable"] and updated["sortable"] and updated["format"] == "date-time"
    assert authed["definitions"]["vehicles"]["properties"]["relationships"]["properties"]["brand"]["x-target-type"] == "vehicle_brands"


async def test_unauthorized_and_unsupported_media_type(world: World) -> None:
    status, body, headers = await world.o_get(VEHICLES, headers={"Authorization": "Bearer nope"})
    assert status == 401 and body["errors"][0]["id"] == "unauthorizedRequest" and "X-RateLimit-Remaining" in headers
    payload = {"data": {"type": "vehicles", "attributes": {"vehicle_name": "Ford T", "speed": "45mph"}}}
    url = world.sandbox.outreach_url + VEHICLES
    async with world.http.post(url, json=payload, headers=world.o_auth) as r:
        assert r.status == 415
    headers = {**world.o_auth, "Content-Type": "application/vnd.api+json"}
    async with world.http.post(url, data=json.dumps(payload), headers=headers) as r:
        created = await r.json(content_type=None)
        assert r.status == 201 and created["data"]["attributes"]["speed"] == "45mph"
    world.sandbox.outreach.expire_tokens()
    status, _, _ = await world.o_get(VEHICLES)
    assert status == 401


async def test_crud_patch_and_delete(world: World) -> None:
    headers = {**world.o_auth, "Content-Type": "application/vnd.api+json"}
    url = f"{world.sandbox.outreach_url}{VEHICLES}/2"
    body = {"data": {"type": "vehicles", "id": 2, "attributes": {"speed": "117mph"}, "relationships": {"brand": {"data": None}}}}
    async with world.http.patch(url, data=json.dumps(body), headers=headers) as r:
        patched = await r.json(content_type=None)
    assert patched["data"]["attributes"]["speed"] == "117mph" and patched["data"]["relationships"]["brand"]["data"] is None
    bad = {"data": {"type": "vehicles", "attributes": {"wheels": 4}}}
    async with world.http.patch(url, data=json.dumps(bad), headers=headers) as r:
        assert r.status == 400
    async with world.http.delete(url, headers=world.o_auth) as r:
        assert r.status == 204
    status, body, _ = await world.o_get(f"{VEHICLES}/2")
    assert status == 404 and body["errors"][0]["id"] == "resourceNotFound"


async def test_rate_limit_headers_and_429(world: World) -> None:
    world.sandbox.outreach.rate_limit = 3
    remaining = []
    for _ in range(3):
        status, _, headers = await world.o_get(VEHICLES)
        remaining.append(int(headers["X-RateLimit-Remaining"]))
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] == 0
    status, body, headers = await world.o_get(VEHICLES)
    assert status == 429 and body["errors"][0]["id"] == "rateLimitExceeded" and int(headers["Retry-After"]) > 0
    world.clock.advance(3600)
    status, _, _ = await world.o_get(VEHICLES)
    assert status == 200


async def test_oauth_rotation_and_one_mint_per_minute(world: World) -> None:
    info, token_url = world.info, world.sandbox.outreach_url + "/oauth/token"
    form = {"grant_type": "refresh_token", "client_id": info.outreach_client_id,
            "client_secret": info.outreach_client_secret, "refresh_token": info.outreach_refresh_token}  # fmt: skip
    async with world.http.post(token_url, data=form) as r:
        first = await r.json()
    assert r.status == 200 and first["expires_in"] == 7200 and first["refresh_token"] != info.outreach_refresh_token
    assert {"access_token", "token_type", "scope", "created_at"} <= first.keys()
    world.clock.advance(61)
    async with world.http.post(token_url, data=form) as r:  # the old refresh token is dead
        assert r.status == 400 and (await r.json())["error"] == "invalid_grant"
    rotated = {**form, "refresh_token": first["refresh_token"]}
    async with world.http.post(token_url, json=rotated) as r:
        second = await r.json()
        assert r.status == 200
    async with world.http.post(token_url, json={**rotated, "refresh_token": second["refresh_token"]}) as r:
        assert r.status == 429 and int(r.headers["Retry-After"]) == 60
    status, _, _ = await world.o_get(VEHICLES, headers={"Authorization": f"Bearer {second['access_token']}"})
    assert status == 200
    world.clock.advance(7201)
    status, _, _ = await world.o_get(VEHICLES, headers={"Authorization": f"Bearer {second['access_token']}"})
    assert status == 401


async def _mint(world: World, refresh_token: str) -> tuple[int, dict, dict]:
    form = {"grant_type": "refresh_token", "client_id": world.info.outreach_client_id,
            "client_secret": world.info.outreach_client_secret, "refresh_token": refresh_token}  # fmt: skip
    async with world.http.post(world.sandbox.outreach_url + "/oauth/token", data=form) as r:
        return r.status, await r.json(content_type=None), dict(r.headers)


async def test_short_lived_tokens_expire_and_mints_are_spaced_as_configured(world: World) -> None:
    world.sandbox.outreach.access_ttl = 2
    world.sandbox.outreach.mint_interval = 0.5
    status, first, _ = await _mint(world, world.info.outreach_refresh_token)
    assert status == 200 and first["expires_in"] == 2
    bearer = {"Authorization": f"Bearer {first['access_token']}"}
    world.clock.advance(1.9)
    assert (await world.o_get(VEHICLES, headers=bearer))[0] == 200
    world.clock.advance(0.1)  # expired on the server's clock: 401, as a real expiry answers
    status, body, _ = await world.o_get(VEHICLES, headers=bearer)
    assert status == 401 and body["errors"][0]["id"] == "unauthorizedRequest"
    status, second, _ = await _mint(world, first["refresh_token"])
    assert status == 200
    world.clock.advance(0.3)  # too soon: 429 with a whole-second Retry-After, grant untouched
    status, body, headers = await _mint(world, second["refresh_token"])
    assert status == 429 and body["errors"][0]["id"] == "rateLimitExceeded" and headers["Retry-After"] == "1"
    assert "0.5 s" in body["errors"][0]["detail"]
    world.clock.advance(0.2)
    status, third, _ = await _mint(world, second["refresh_token"])
    assert status == 200 and third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])


async def test_fractional_lifetimes_and_strict_rotation(world: World) -> None:
    world.sandbox.outreach.access_ttl = 1.5
    world.sandbox.outreach.mint_interval = 0
    status, first, _ = await _mint(world, world.info.outreach_refresh_token)
    assert status == 200 and first["expires_in"] == 1.5
    status, _, _ = await _mint(world, first["refresh_token"])
    assert status == 200
    status, body, _ = await _mint(world, first["refresh_token"])  # each refresh token works once
    assert status == 400 and body["error"] == "invalid_grant"


async def test_lax_rotation_lets_the_previous_refresh_token_work_once_more(world: World) -> None:
    world.sandbox.outreach.strict_rotation = False
    world.sandbox.outreach.mint_interval = 0
    _, first, _ = await _mint(world, world.info.outreach_refresh_token)
    status, again, _ = await _mint(world, world.info.outreach_refresh_token)  # the previous one
    assert status == 200 and again["refresh_token"] != first["refresh_token"]
    status, body, _ = await _mint(world, world.info.outreach_refresh_token)  # two back: dead
    assert status == 400 and body["error"] == "invalid_grant"


async def test_raw_attribute_values_are_served_verbatim_in_place(world: World) -> None:
    ids = world.sandbox.outreach.ids("vehicles")
    poisoned = ids[4]
    world.sandbox.outreach.serve_raw("vehicles", poisoned, updatedAt=12345, speed={"mph": [1]})
    records, _ = await _all_pages(world, world.sandbox.outreach_url + VEHICLES + "?page[size]=10&sort=updatedAt")
    served = {r["id"]: r["attributes"] for r in records}
    assert len(records) == 60  # the page is still served, in the same order as before
    assert served[poisoned]["updatedAt"] == 12345 and served[poisoned]["speed"] == {"mph": [1]}
    _, body, _ = await world.o_get(f"{VEHICLES}/{poisoned}?fields[vehicles]=speed")
    assert body["data"]["attributes"] == {"speed": {"mph": [1]}}
    world.sandbox.outreach.update("vehicles", poisoned, color="gold")  # an edit keeps the poison
    assert world.sandbox.outreach.get("vehicles", poisoned)["attributes"]["updatedAt"] == 12345  # type: ignore[index]
    world.sandbox.outreach.serve_stored("vehicles", poisoned)
    assert isinstance(world.sandbox.outreach.get("vehicles", poisoned)["attributes"]["updatedAt"], str)  # type: ignore[index]


async def test_an_edit_mid_listing_runs_before_the_next_page(world: World) -> None:
    outreach = world.sandbox.outreach
    first_id = outreach.order_of("vehicles")[0][1]
    outreach.edit_mid_listing("vehicles", lambda: outreach.update("vehicles", first_id, color="gold"))
    status, body, _ = await world.o_get(VEHICLES + "?page[size]=10&sort=updatedAt")
    assert body["data"][0]["id"] == first_id and body["data"][0]["attributes"]["color"] != "gold"  # not yet
    rest, urls = await _all_pages(world, body["links"]["next"])
    assert rest[-1]["id"] == first_id and rest[-1]["attributes"]["color"] == "gold"
    outreach.update("vehicles", first_id, color="teal")
    again, _ = await _all_pages(world, urls[0])
    assert again[-1]["attributes"]["color"] == "teal"  # the edit ran once
