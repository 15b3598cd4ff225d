"""The Outreach client's wire tests use the same fakes as the HTTP layer's."""

from tests.http.conftest import fake_time, mocked, session  # noqa: F401
