"""The directory's tables: pages with their cursor, case-insensitive emails, identities, deletions."""

from __future__ import annotations

from bridge.store import directory
from bridge.store.directory import Person
from bridge.store.pool import Connection


async def test_a_page_and_its_cursor_are_saved_together_and_found_by_any_email_in_any_case(db_conn: Connection) -> None:
    people = [
        Person("11", "ext-11", ("Ann.Lee@Example.COM", "ann@home.example.org"), "Ann Lee", False),
        Person("12", None, ("bob@example.com",), "Bob", False),
    ]
    await directory.save_page(db_conn, "users", people, "c1", end=False)
    stored = await directory.load_cursor(db_conn, "users")
    assert stored is not None and (stored.cursor, stored.complete, stored.pages) == ("c1", False, 1)
    found = await directory.find(db_conn, "users", "email", ["ann.lee@example.com", "ANN@HOME.example.org", "nobody@x.org"])
    assert found == {"ann.lee@example.com": "11", "ann@home.example.org": "11"}
    assert await directory.find(db_conn, "users", "name", ["ann LEE"]) == {"ann lee": "11"}
    assert await directory.find(db_conn, "users", "external_id", ["ext-11", "EXT-11"]) == {"ext-11": "11"}
    await directory.save_page(db_conn, "users", [], "c2", end=True)
    stored = await directory.load_cursor(db_conn, "users")
    assert stored is not None and (stored.cursor, stored.complete, stored.pages) == ("c2", True, 2)


async def test_a_later_page_replaces_identities_and_deleted_people_are_no_answer(db_conn: Connection) -> None:
    await directory.save_page(db_conn, "users", [Person("11", None, ("old@example.com", "keep@example.com"), "Ann", False)], "c1", end=True)
    await directory.save_page(db_conn, "users", [Person("11", None, ("new@example.com", "keep@example.com"), "Ann", False)], "c2", end=True)
    found = await directory.find(db_conn, "users", "email", ["old@example.com", "new@example.com", "keep@example.com"])
    assert found == {"new@example.com": "11", "keep@example.com": "11"}
    await directory.save_page(db_conn, "users", [Person("11", None, ("new@example.com",), "Ann", True),
                                                 Person("9", None, ("new@example.com",), "Ann B", False)], "c3", end=True)  # fmt: skip
    assert await directory.find(db_conn, "users", "email", ["new@example.com"]) == {"new@example.com": "9"}
    assert await directory.count(db_conn, "users") == 1


async def test_organizations_by_name_and_the_lowest_id_wins_a_tie(db_conn: Connection) -> None:
    orgs = [Person("300", None, (), "Acme", False), Person("200", None, (), "ACME", False), Person("100", None, (), "acme", True)]
    await directory.save_page(db_conn, "organizations", orgs, "o1", end=True)
    assert await directory.find(db_conn, "organizations", "name", ["Acme"]) == {"acme": "200"}
    assert await directory.find(db_conn, "users", "name", ["Acme"]) == {}


async def test_one_refresher_per_kind(db_pool) -> None:  # type: ignore[no-untyped-def]
    async with db_pool.acquire() as a, db_pool.acquire() as b:
        assert await directory.try_lock(a, "users")
        assert not await directory.try_lock(b, "users")
        assert await directory.try_lock(b, "organizations")
        await directory.unlock(a, "users")
        await directory.wait_for_lock(b, "users")  # free now: returns at once, keeps nothing
        assert await directory.try_lock(a, "users")
        await directory.unlock(a, "users")
        await directory.unlock(b, "organizations")
