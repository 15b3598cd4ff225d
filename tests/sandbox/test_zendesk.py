"""The Zendesk simulator over real HTTP: auth, objects, fields, limits, records, jobs, users."""

from __future__ import annotations

import base64

from .conftest import World, wait_for

CO = "/api/v2/custom_objects"


async def _vehicle_object(world: World) -> None:
    status, _, _ = await world.z("POST", CO, {"custom_object": {"key": "vehicle", "title": "Vehicle", "title_pluralized": "Vehicles"}})
    assert status == 201
    fields = [
        {"key": "speed", "type": "integer", "title": "Speed"},
        {"key": "weight", "type": "decimal", "title": "Weight"},
        {"key": "electric", "type": "checkbox", "title": "Electric"},
        {"key": "registered_on", "type": "date", "title": "Registered"},
        {"key": "color", "type": "dropdown", "title": "Color", "custom_field_options": [{"name": "Red", "value": "red"}, {"name": "Blue", "value": "blue"}]},
        {"key": "tags", "type": "multiselect", "title": "Tags", "custom_field_options": [{"name": "A", "value": "a"}, {"name": "B", "value": "b"}]},
        {"key": "plate", "type": "regexp", "title": "Plate", "regexp_for_validation": "^[A-Z]{2}-\\d{3}$"},
        {"key": "driver", "type": "lookup", "title": "Driver", "relationship_target_type": "zen:user"},
        {"key": "note", "type": "text", "title": "Note"},
    ]
    for field in fields:
        status, body, _ = await world.z("POST", f"{CO}/vehicle/fields", {"custom_object_field": field})
        assert status == 201, body


async def _job(world: World, action: str, items: list) -> dict:
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": action, "items": items}})
    assert status == 201 and body["job_status"]["status"] == "queued", body
    url = body["job_status"]["url"]
    done: dict = {}

    async def completed() -> bool:
        _, polled, _ = await world.z("GET", url)
        done.update(polled["job_status"])
        return polled["job_status"]["status"] == "completed"

    await wait_for(completed)
    return done


async def test_oauth_client_credentials_basic_token_and_401(world: World) -> None:
    info, url = world.info, world.sandbox.zendesk_url + "/oauth/tokens"
    body = {"grant_type": "client_credentials", "client_id": info.zendesk_client_id, "client_secret": info.zendesk_client_secret, "scope": "read write"}
    async with world.http.post(url, json=body) as r:
        token = await r.json()
    assert r.status == 201 and token["token_type"] == "bearer" and token["expires_in"] == 3600
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    assert (await world.z("GET", CO, headers=bearer))[0] == 200
    async with world.http.post(url, json={**body, "client_secret": "wrong"}) as r:
        assert r.status == 401
    basic = base64.b64encode(f"{info.zendesk_email}/token:{info.zendesk_api_token}".encode()).decode()
    assert (await world.z("GET", CO, headers={"Authorization": f"Basic {basic}"}))[0] == 200
    status, err, _ = await world.z("GET", CO, headers={})
    assert status == 401 and "error" in err
    world.clock.advance(3601)
    assert (await world.z("GET", CO, headers=bearer))[0] == 401
    assert (await world.z("GET", CO))[0] == 200  # the static token does not expire
    world.sandbox.zendesk.expire_tokens()
    assert (await world.z("GET", CO))[0] == 401


async def test_objects_fields_and_limits(world: World) -> None:
    await _vehicle_object(world)
    _, objects, _ = await world.z("GET", CO)
    assert [o["key"] for o in objects["custom_objects"]] == ["vehicle"]
    _, limit, _ = await world.z("GET", f"{CO}/limits/object_limit")
    assert limit == {"count": 1, "limit": 30}
    _, limit, _ = await world.z("GET", f"{CO}/vehicle/limits/field_limit")
    assert limit == {"count": 9, "limit": 100}
    _, field, _ = await world.z("GET", f"{CO}/vehicle/fields/driver")
    assert field["custom_object_field"]["relationship_target_type"] == "zen:user"
    status, _, _ = await world.z("POST", f"{CO}/vehicle/fields", {"custom_object_field": {"key": "x", "type": "lookup", "title": "X", "relationship_target_type": "zen:nothing"}})
    assert status == 422
    world.sandbox.zendesk.object_limit = 1
    status, body, _ = await world.z("POST", CO, {"custom_object": {"key": "boat", "title": "Boat", "title_pluralized": "Boats"}})
    assert status == 422 and body["errors"][0]["code"] == "LimitExceeded"
    _, limit, _ = await world.z("GET", f"{CO}/limits/record_limit")
    assert limit == {"count": 0, "limit": 50_000_000}


async def test_record_validation_by_field_type(world: World) -> None:
    await _vehicle_object(world)
    bad = {"speed": "fast", "weight": "heavy", "electric": "yes", "registered_on": "2024-13-01", "color": "green",
           "tags": ["a", "z"], "plate": "nope", "wheels": 4}  # fmt: skip
    status, body, _ = await world.z("POST", f"{CO}/vehicle/records", {"custom_object_record": {"name": "x", "custom_object_fields": bad}})
    assert status == 422 and body["error"] == "RecordInvalid"
    assert set(body["details"]) == set(bad)
    status, body, _ = await world.z("POST", f"{CO}/vehicle/records", {"custom_object_record": {"custom_object_fields": {}}})
    assert status == 422 and "name" in body["details"]
    good = {"speed": 130, "weight": 1.5, "electric": False, "registered_on": "2024-07-25", "color": "red", "tags": ["a", "b"], "plate": "AB-123"}
    status, body, _ = await world.z("POST", f"{CO}/vehicle/records", {"custom_object_record": {"name": "DeLorean", "external_id": "e1", "custom_object_fields": good}})
    assert status == 201 and body["custom_object_record"]["custom_object_fields"]["speed"] == 130 and len(body["custom_object_record"]["id"]) == 26
    status, body, _ = await world.z("POST", f"{CO}/vehicle/records", {"custom_object_record": {"name": "Again", "external_id": "e1"}})
    assert status == 422 and "external_id" in body["details"]
    status, body, _ = await world.z("POST", f"{CO}/vehicle/records", {"custom_object_record": {"name": "Big", "custom_object_fields": {"note": "x" * 40_000}}})
    assert status == 422


async def test_lookup_resolution_and_upsert_by_external_id(world: World) -> None:
    await _vehicle_object(world)
    zd = world.sandbox.zendesk
    user_id = next(iter(zd.users))
    ext = zd.users[user_id]["external_id"]
    payload = {"custom_object_record": {"name": "Car", "custom_object_fields": {"driver": f"external_id:{ext}"}}}
    status, body, _ = await world.z("PATCH", f"{CO}/vehicle/records?external_id=car-1", payload)
    assert status == 200 and body["custom_object_record"]["custom_object_fields"]["driver"] == str(user_id)
    status, body, _ = await world.z("PATCH", f"{CO}/vehicle/records?external_id=car-1", {"custom_object_record": {"custom_object_fields": {"speed": 5}}})
    fields = body["custom_object_record"]["custom_object_fields"]
    assert fields["speed"] == 5 and fields["driver"] == str(user_id) and body["custom_object_record"]["name"] == "Car"
    assert len(zd.records("vehicle")) == 1 and zd.record_by_external_id("vehicle", "car-1")["custom_object_fields"]["speed"] == 5
    status, body, _ = await world.z("PATCH", f"{CO}/vehicle/records?external_id=car-1", {"custom_object_record": {"custom_object_fields": {"driver": "external_id:nobody"}}})
    assert status == 422 and "driver" in body["details"]
    status, _, _ = await world.z("DELETE", f"{CO}/vehicle/records?external_id=car-1")
    assert status == 204 and zd.records("vehicle") == []


async def test_bulk_job_lifecycle_and_per_item_results(world: World) -> None:
    await _vehicle_object(world)
    world.sandbox.zendesk.jobs.delay = 0.05
    user_ext = next(iter(world.sandbox.zendesk.users.values()))["external_id"]
    items = [{"external_id": f"v{i}", "name": f"Vehicle {i}", "custom_object_fields": {"speed": i, "driver": f"external_id:{user_ext}"}} for i in range(5)]
    items[2]["custom_object_fields"]["driver"] = "external_id:ghost"
    items[3]["custom_object_fields"]["speed"] = "fast"
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": "create_or_update_by_external_id", "items": items}})
    job_id = body["job_status"]["id"]
    _, early, _ = await world.z("GET", f"/api/v2/job_statuses/{job_id}")
    assert early["job_status"]["status"] in ("queued", "working") and early["job_status"]["total"] == 5
    job = await _job(world, "create_or_update_by_external_id", items[:1] + [{**items[1], "name": "Renamed"}])
    assert [r["status"] for r in job["results"]] == ["Updated", "Updated"]  # jobs run in submission order
    assert world.sandbox.zendesk.record_by_external_id("vehicle", "v1")["name"] == "Renamed"
    _, many, _ = await world.z("GET", f"/api/v2/job_statuses/show_many?ids={job_id},{job['id']}")
    first = next(s for s in many["job_statuses"] if s["id"] == job_id)
    results = {r["index"]: r for r in first["results"]}
    assert first["status"] == "completed" and first["progress"] == 5
    assert [results[i]["success"] for i in range(5)] == [True, True, False, False, True]
    assert results[2]["external_id"] == "v2" and results[2]["error"] and "driver" in results[2]["details"]
    assert results[0]["status"] == "Created" and isinstance(results[0]["id"], str)
    assert world.sandbox.zendesk.record_by_external_id("vehicle", "v2") is None
    deleted = await _job(world, "delete_by_external_id", ["v0", "missing"])
    assert [r["success"] for r in deleted["results"]] == [True, False]


async def test_job_item_limits_and_too_many_jobs(world: World) -> None:
    await _vehicle_object(world)
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": "create", "items": [{"name": "x"}] * 101}})
    assert status == 400
    zd = world.sandbox.zendesk
    zd.jobs.max_jobs, zd.jobs.delay = 2, 5.0
    for _ in range(2):
        assert (await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": "create", "items": [{"name": "x"}]}}))[0] == 201
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": "create", "items": [{"name": "x"}]}})
    assert status == 429 and body["error"] == "TooManyJobs"


async def test_a_job_failed_as_a_whole_has_a_message_and_no_item_results(world: World) -> None:
    await _vehicle_object(world)
    world.sandbox.zendesk.jobs.fail_jobs(1, "Internal Server Error: the job could not run")
    items = [{"external_id": "v1", "name": "Vehicle 1"}]
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": "create_or_update_by_external_id", "items": items}})
    assert status == 201 and body["job_status"]["status"] == "queued"
    failed: dict = {}

    async def finished() -> bool:
        _, polled, _ = await world.z("GET", body["job_status"]["url"])
        failed.update(polled["job_status"])
        return polled["job_status"]["status"] in ("completed", "failed")

    await wait_for(finished)
    assert failed["status"] == "failed" and failed["results"] is None
    assert "could not run" in failed["message"]
    assert world.sandbox.zendesk.record_by_external_id("vehicle", "v1") is None  # nothing applied
    job = await _job(world, "create_or_update_by_external_id", items)  # the fault ran out
    assert job["results"][0]["success"] is True


async def test_a_job_with_one_item_invalid_at_request_time_is_refused_whole(world: World) -> None:
    await _vehicle_object(world)
    items = [{"external_id": f"v{i}", "name": f"Vehicle {i}", "custom_object_fields": {"note": "ok"}} for i in range(10)]
    items[7]["custom_object_fields"]["note"] = "x" * 40_000  # over the 32 KB a record may hold
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": "create_or_update_by_external_id", "items": items}})
    assert status == 422 and body["error"] == "RecordInvalid"
    assert list(body["details"]) == ["items[7]"] and "32768" in body["details"]["items[7]"][0]["description"]
    items[7] = {"external_id": "v7", "name": "Vehicle 7", "custom_object_fields": "not an object"}
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": "create_or_update_by_external_id", "items": items}})
    assert status == 400 and "items[7]" in str(body)
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs", {"job": {"action": "delete_by_external_id", "items": ["v1", {"x": 1}]}})
    assert status == 400 and "items[1]" in str(body)
    assert world.sandbox.zendesk.records("vehicle") == [] and not world.sandbox.zendesk.jobs.statuses
    job = await _job(world, "create_or_update_by_external_id", items[:7])
    assert all(r["success"] for r in job["results"])


async def test_record_listing_cursor_paging_and_filters(world: World) -> None:
    await _vehicle_object(world)
    zd = world.sandbox.zendesk
    made = [zd.create_record("vehicle", {"name": f"r{i}", "external_id": f"x{i}"})["id"] for i in range(25)]
    seen, url = [], f"{CO}/vehicle/records?page[size]=10"
    while url:
        status, body, _ = await world.z("GET", url)
        assert status == 200 and body["meta"].keys() == {"has_more", "after_cursor", "before_cursor"}
        seen += [r["id"] for r in body["custom_object_records"]]
        url = body["links"]["next"] if body["meta"]["has_more"] else None
    assert seen == made
    _, body, _ = await world.z("GET", f"{CO}/vehicle/records?filter[external_ids]=x3,x7")
    assert sorted(r["external_id"] for r in body["custom_object_records"]) == ["x3", "x7"]
    assert (await world.z("GET", f"{CO}/vehicle/records?page[size]=101"))[0] == 400
    _, count, _ = await world.z("GET", f"{CO}/vehicle/records/count")
    assert count["count"]["value"] == 25


async def test_users_and_organizations(world: World) -> None:
    zd = world.sandbox.zendesk
    uid = next(iter(zd.users))
    user = zd.users[uid]
    org = zd.add_organization("Acme", external_id="acme")
    _, body, _ = await world.z("GET", f"/api/v2/users/show_many?external_ids={user['external_id']},nobody")
    assert [u["id"] for u in body["users"]] == [uid]
    _, body, _ = await world.z("GET", f"/api/v2/users/show_many?ids={uid}")
    assert body["users"][0]["email"] == user["email"]
    _, body, _ = await world.z("GET", f"/api/v2/users/search?query=email:{user['email']}")
    assert [u["id"] for u in body["users"]] == [uid]
    _, body, _ = await world.z("GET", "/api/v2/organizations/show_many?external_ids=acme")
    assert [o["id"] for o in body["organizations"]] == [org]
    zd.delete_user(uid)
    _, body, _ = await world.z("GET", f"/api/v2/users/show_many?ids={uid}")
    assert body["users"] == []


async def test_rate_limit_per_minute(world: World) -> None:
    world.sandbox.zendesk.rate_limit = 2
    statuses = [(await world.z("GET", CO))[0] for _ in range(3)]
    status, body, headers = await world.z("GET", CO)
    assert statuses == [200, 200, 429] and headers["X-Rate-Limit"] == "2" and int(headers["Retry-After"]) >= 1
    world.clock.advance(60)
    assert (await world.z("GET", CO))[0] == 200


async def test_the_rate_window_counts_every_caller_of_the_account_together(world: World) -> None:
    import base64

    zd = world.sandbox.zendesk
    zd.rate_limit, zd.rate_window = 3, 5
    world.clock.now = world.clock.now.replace(second=0, microsecond=0)  # the start of a window
    basic = base64.b64encode(f"{world.info.zendesk_email}/token:{world.info.zendesk_api_token}".encode()).decode()
    other = {"Authorization": f"Basic {basic}"}
    statuses = [(await world.z("GET", CO, headers=h))[0] for h in (world.z_auth, other, world.z_auth)]
    status, _, headers = await world.z("GET", CO, headers=other)
    assert statuses == [200, 200, 200] and status == 429 and 1 <= int(headers["Retry-After"]) <= 5
    world.clock.advance(5)
    assert (await world.z("GET", CO, headers=other))[0] == 200


async def test_a_held_job_waits_while_later_jobs_complete(world: World) -> None:
    await _vehicle_object(world)
    zd = world.sandbox.zendesk
    zd.jobs.hold(lambda key, action, items: any(i.get("name") == "Old" for i in items))
    item = {"external_id": "car-1", "custom_object_fields": {"speed": 1}}
    status, body, _ = await world.z("POST", f"{CO}/vehicle/jobs",
                                    {"job": {"action": "create_or_update_by_external_id", "items": [{**item, "name": "Old"}]}})
    held_id = body["job_status"]["id"]
    newer = await _job(world, "create_or_update_by_external_id", [{**item, "name": "New"}])
    assert newer["status"] == "completed" and zd.record_by_external_id("vehicle", "car-1")["name"] == "New"
    assert zd.jobs.held() == [held_id]
    _, polled, _ = await world.z("GET", f"/api/v2/job_statuses/{held_id}")
    assert polled["job_status"]["status"] == "queued"
    zd.jobs.release()

    async def done() -> bool:
        return (await world.z("GET", f"/api/v2/job_statuses/{held_id}"))[1]["job_status"]["status"] == "completed"

    await wait_for(done)
    assert zd.record_by_external_id("vehicle", "car-1")["name"] == "Old"  # the older job finished last
    again = await _job(world, "create_or_update_by_external_id", [{**item, "name": "Old"}])  # held once only
    assert again["status"] == "completed" and zd.jobs.held() == []


async def test_job_statuses_show_many_answers_the_known_ids_and_leaves_out_the_others(world: World) -> None:
    await _vehicle_object(world)
    first = await _job(world, "create_or_update_by_external_id", [{"external_id": "v1", "name": "One"}])
    second = await _job(world, "delete_by_external_id", ["v1"])

    status, many, _ = await world.z("GET", f"/api/v2/job_statuses/show_many?ids={second['id']},V3-gone,{first['id']}")

    assert status == 200
    assert [(s["id"], s["status"]) for s in many["job_statuses"]] == [(second["id"], "completed"), (first["id"], "completed")]
    assert many["job_statuses"][1]["results"][0]["external_id"] == "v1"
    status, none, _ = await world.z("GET", "/api/v2/job_statuses/show_many?ids=V3-gone")
    assert (status, none) == (200, {"job_statuses": []})
