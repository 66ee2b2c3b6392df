"""What ``perennial.main`` registers with kopf, and what the operator's kopf settings rely on."""

import kopf

import perennial.main  # noqa: F401 - registers the handlers


def test_every_resource_handler_only_watches() -> None:
    # main.NoDiffBaseStorage skips kopf's diff base, which only handlers that diff
    # (on.create/update/delete/field, daemons, timers) would need. If one is ever added,
    # this fails and that storage has to go back to kopf's AnnotationsDiffBaseStorage.
    registry = kopf.get_default_registry()
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []
    assert list(registry._webhooks.get_all_handlers()) == []
    watched = {(h.selector.group, h.selector.any_name) for h in registry._watching.get_all_handlers() if h.selector}
    assert watched == {
        ("perennial.dev", "trainingjobs"),
        ("perennial.dev", "modeldeployments"),
        ("perennial.dev", "driftpolicies"),
        ("batch", "jobs"),
        ("apps", "deployments"),
        ("", "services"),
    }
