"""The conformance matrix is what CI and the README report: it must say exactly what the JUnit reports say."""

from pathlib import Path

from devstack.conformance import ProfileRun, matrix, read_junit
from devstack.layout import Layout
from devstack.profiles import available_profiles, server_kits

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="4">
<properties><property name="platform_start_s" value="12.5"/>
<property name="platform_pss_mib" value="1197"/></properties>
<testcase classname="tests.e2e.test_order_saga" name="test_happy_path" time="3.5"/>
<testcase classname="tests.e2e.test_order_saga" name="test_out_of_stock" time="1.5"><failure message="boom"/></testcase>
<testcase classname="tests.e2e.test_sidecars" name="test_metadata[users]" time="0.2"/>
<testcase classname="tests.e2e.test_sidecars" name="test_metadata[gateway]" time="0.1"><skipped/></testcase>
</testsuite></testsuites>
"""


def test_a_report_becomes_one_column_of_the_matrix(tmp_path: Path) -> None:
    report = tmp_path / "kafka.xml"
    report.write_text(REPORT)
    run = ProfileRun("kafka", exit_code=1, wall_s=90.4)

    read_junit(report, run)
    table = matrix([run]).splitlines()

    assert table[0] == "| scenario | kafka |"
    assert "| pinned daprd, scoped components | pass 1/1 · 0 s |" in table
    assert "| order saga: success, compensation, concurrency | FAIL 1/2 · 5 s |" in table
    assert "| **suite** | **FAIL** |" in table
    assert "| suite time (incl. start and stop) | 90 s |" in table
    assert "| platform start to healthy | 12.5 s |" in table
    assert "| memory after start (PSS) | 1197 MiB |" in table


def test_a_profile_that_failed_before_any_test_ran_is_not_reported_as_passing() -> None:
    run = ProfileRun("nats", exit_code=2, wall_s=3.0)

    assert not run.passed
    assert "| **suite** | **FAIL** |" in matrix([run])


def test_the_shipped_profiles_come_first_and_a_profile_of_your_own_has_only_the_observability_servers(
    tmp_path: Path,
) -> None:
    for name in ("rabbitmq", "aws", "local", "kafka", "nats"):
        (tmp_path / "components" / name).mkdir(parents=True)

    assert available_profiles(Layout(tmp_path)) == ["local", "kafka", "nats", "rabbitmq", "aws"]
    assert [kit.name for kit in server_kits("aws")] == ["zipkin", "prometheus"]
    assert [kit.name for kit in server_kits("kafka")] == ["postgres", "kafka", "zipkin", "prometheus"]
