"""The route table (sidecar.routes) against the code it names: every handler exists, a route with
a body hands its handler the model the table (and so the document) names, and the shapes it
names are the documented ones."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

from typing_extensions import is_typeddict

from sidecar import api, client, models, responses
from sidecar.routes import ROUTES, Tag, by_path


class TestRouteTable:
    def test_each_route_is_declared_once(self) -> None:
        """No (method, path) and no operationId appears twice."""
        assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)
        assert len({r.operation_id for r in ROUTES}) == len(ROUTES)
        assert sum(len(group) for group in by_path().values()) == len(ROUTES)

    def test_handlers_take_the_body_model_the_table_names(self) -> None:
        """A route with a body calls a handler whose `body` parameter is that model; a route
        without one calls a handler of the request alone."""
        for route in ROUTES:
            handler = getattr(api.LocalApi, route.handler)
            hints = typing.get_type_hints(handler, vars(api) | vars(models))
            parameters = list(inspect.signature(handler).parameters)
            if route.body is None:
                assert parameters == ["self", "request"], route.path
            else:
                assert parameters == ["self", "request", "body"], route.path
                assert hints["body"] is getattr(models, route.body), route.path

    def test_named_shapes_are_documented_ones(self) -> None:
        """Every answer shape the table names is a response shape, and every tag one of the
        declared groups."""
        for route in ROUTES:
            if route.answer.shape is not None:
                assert route.answer.shape in responses.SHAPES, route.path
            assert route.tag in Tag

    def test_response_shapes_do_not_reuse_domain_names(self) -> None:
        """The document's shapes are named apart from the classes they render (no second
        `Status`), so neither a reader nor a generated client confuses them."""
        from sidecar import deployment, game, match, result, status

        domain = {
            name
            for module in (status, deployment, game, match, result)
            for name, value in vars(module).items()
            if inspect.isclass(value)
        }
        shapes = {name for name, value in vars(responses).items() if is_typeddict(value)}
        assert shapes
        assert not shapes & domain

    def test_the_copyable_client_calls_only_routes_of_the_table(self) -> None:
        """sidecar/client.py is stdlib-only (games copy the file), so the table cannot feed it;
        every call it makes is checked against the table instead."""
        source = Path(client.__file__).read_text()
        calls = set(re.findall(r'self\._(?:call|open)\("([A-Z]+)", "([^"]+)"', source))
        assert len(calls) >= 15
        assert calls <= {(route.method, route.path) for route in ROUTES}
