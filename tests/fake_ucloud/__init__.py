"""A fake UCloud API server for tests: `with FakeUCloud() as fake: ... fake.base_url`."""

from tests.fake_ucloud.faults import Fault
from tests.fake_ucloud.server import FakeUCloud

__all__ = ["FakeUCloud", "Fault"]
