"""Nothing the platform opens can be reached from another host: every socket it listens on is on loopback."""

import pytest

from devstack.platform_run import Platform
from devstack.processes import listening_sockets

pytestmark = pytest.mark.e2e


def test_every_socket_the_platform_listens_on_is_on_loopback(platform: Platform) -> None:
    sockets = listening_sockets(platform.processes())

    # The sockets read are those of the platform's processes: every port dapr.yaml gives an app and its sidecar
    # is among them (the sidecars' internal gRPC ports, the servers' and placement's are too, unnamed here).
    assert {port for app in platform.run_file.apps for port in app.ports} <= {s.port for s in sockets}
    exposed = sorted(
        f"{s.program} (pid {s.pid}) {s.protocol} {s.address}:{s.port}" for s in sockets if not s.on_loopback
    )
    assert exposed == []
