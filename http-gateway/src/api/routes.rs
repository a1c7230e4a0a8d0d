//! One table per API of the routes it serves: the router is built from the table, so the list
//! of (path, methods) that `GET /openapi.json` is checked against (and that `/metrics` labels
//! requests with) cannot drift from what the router answers.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

/// One route: its path template as axum matches it and the methods it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// The path template, e.g. `/topics/{topic}/messages`.
    pub path: &'static str,
    /// The methods, upper case.
    pub methods: Vec<Method>,
}

/// A router and the table it was built from.
pub struct Routes<S = ()> {
    router: Router<S>,
    entries: Vec<RouteEntry>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

fn filter(m: &Method) -> MethodFilter {
    match *m {
        Method::GET => MethodFilter::GET,
        Method::POST => MethodFilter::POST,
        Method::DELETE => MethodFilter::DELETE,
        Method::PUT => MethodFilter::PUT,
        Method::PATCH => MethodFilter::PATCH,
        Method::HEAD => MethodFilter::HEAD,
        Method::OPTIONS => MethodFilter::OPTIONS,
        _ => panic!("route table: method {m} is not served by this gateway"),
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes.
    pub fn new() -> Self {
        Routes {
            router: Router::new(),
            entries: Vec::new(),
        }
    }

    /// Serves `handler` at `path` for each of `methods`.
    pub fn on<H, T>(mut self, path: &'static str, methods: &[Method], handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        let mut mr: Option<MethodRouter<S>> = None;
        for m in methods {
            mr = Some(match mr {
                None => on(filter(m), handler.clone()),
                Some(r) => r.on(filter(m), handler.clone()),
            });
        }
        if let Some(mr) = mr {
            self.router = self.router.route(path, mr);
            self.entries.push(RouteEntry {
                path,
                methods: methods.to_vec(),
            });
        }
        self
    }

    /// Hands every method at `path` to `handler`, which answers `methods` and refuses the others
    /// itself (in its API's error format rather than a bare 405).
    pub fn any<H, T>(mut self, path: &'static str, methods: &[Method], handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.router = self.router.route(path, axum::routing::any(handler));
        self.entries.push(RouteEntry {
            path,
            methods: methods.to_vec(),
        });
        self
    }

    /// Applies `f` to the router (layers), keeping the table.
    pub fn map(self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        Routes {
            router: f(self.router),
            entries: self.entries,
        }
    }

    /// Gives the router its state.
    pub fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes {
            router: self.router.with_state(state),
            entries: self.entries,
        }
    }
}

impl Routes<()> {
    /// Both tables' routes in one router.
    pub fn merge(mut self, other: Routes<()>) -> Self {
        self.router = self.router.merge(other.router);
        self.entries.extend(other.entries);
        self
    }

    /// The table.
    pub fn entries(&self) -> &[RouteEntry] {
        &self.entries
    }

    /// The router and the table.
    pub fn into_parts(self) -> (Router, Vec<RouteEntry>) {
        (self.router, self.entries)
    }

    /// The router.
    pub fn into_router(self) -> Router {
        self.router
    }
}
