"""Does a live child still say what Perennial asks for (``perennial.domain.children``)?"""

from __future__ import annotations

from typing import Any

import pytest

from perennial.domain.children import differs, first_difference

LIVE: dict[str, Any] = {
    "metadata": {"name": "churn", "labels": {"app": "churn", "team": "risk"}, "resourceVersion": "7"},
    "spec": {
        "replicas": 2,
        "template": {
            "metadata": {"labels": {"app": "churn"}},
            "spec": {"containers": [{"name": "server", "image": "srv:1", "imagePullPolicy": "IfNotPresent"}]},
        },
    },
}


def test_what_the_api_server_added_is_no_difference() -> None:
    desired = {
        "metadata": {"labels": {"app": "churn"}},
        "spec": {"template": {"spec": {"containers": [{"name": "server", "image": "srv:1"}]}}},
    }
    assert first_difference(LIVE, desired) is None
    assert not differs(LIVE, desired)


@pytest.mark.parametrize("empty", [{}, [], None])
def test_an_empty_value_matches_the_absent_key_the_api_server_leaves(empty: object) -> None:
    # The API server drops `annotations: {}` (omitempty): asking for none is what is there.
    desired = {"spec": {"template": {"metadata": {"labels": {"app": "churn"}, "annotations": empty}}}}
    assert first_difference(LIVE, desired) is None


def test_a_non_empty_value_for_an_absent_key_differs_at_its_path() -> None:
    desired = {"spec": {"template": {"metadata": {"annotations": {"a": "b"}}}}}
    assert first_difference(LIVE, desired) == "spec.template.metadata.annotations"


def test_a_changed_scalar_inside_a_list_is_found_by_index() -> None:
    desired = {"spec": {"template": {"spec": {"containers": [{"name": "server", "image": "srv:2"}]}}}}
    assert first_difference(LIVE, desired) == "spec.template.spec.containers[0].image"


def test_lists_are_owned_whole() -> None:
    two = {"spec": {"template": {"spec": {"containers": [{"name": "server"}, {"name": "sidecar"}]}}}}
    assert first_difference(LIVE, two) == "spec.template.spec.containers"


def test_an_empty_value_where_the_live_object_has_one_still_differs() -> None:
    # Only an absent key stands for "empty": a live value is compared as usual.
    assert first_difference(LIVE, {"spec": {"replicas": None}}) == "spec.replicas"
    assert first_difference(LIVE, {"metadata": {"labels": {}}}) is None  # a map contains the empty map


def test_a_whole_object_of_another_shape_differs_at_the_top() -> None:
    assert first_difference([], {"a": 1}) == ""
