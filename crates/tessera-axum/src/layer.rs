//! The tower layer, and the extractor that reads what it found.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::Request;
use http::request::Parts;
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::Kind;
use crate::{Authenticated, Rejection, Tessera};

/// Protects every route under it: a request without a credential tessera
/// accepts is answered with a [`Rejection`] and never reaches the inner
/// service; an accepted one carries [`Authenticated`] in its extensions.
/// From [`Tessera::layer`].
///
/// ```
/// use axum::{Router, routing::get};
/// use tessera_axum::{Authenticated, Tessera};
///
/// # fn app() -> Result<Router, tessera_axum::BuildError> {
/// let tessera = Tessera::builder("https://auth.example.com").build()?;
/// let app = Router::new()
///     // Protected: behind the layer.
///     .route("/me", get(|who: Authenticated| async move { who.username }))
///     .route_layer(tessera.layer())
///     // Public: added after the layer, so not under it.
///     .route("/", get(|| async { "hello" }));
/// # Ok(app)
/// # }
/// # app().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct RequireAuthLayer {
    tessera: Tessera,
}

impl RequireAuthLayer {
    pub(crate) fn new(tessera: Tessera) -> Self {
        Self { tessera }
    }
}

impl<S> Layer<S> for RequireAuthLayer {
    type Service = RequireAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAuth {
            inner,
            tessera: self.tessera.clone(),
        }
    }
}

/// The service of [`RequireAuthLayer`].
#[derive(Debug, Clone)]
pub struct RequireAuth<S> {
    inner: S,
    tessera: Tessera,
}

impl<S, B> Service<Request<B>> for RequireAuth<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone is not ready; keep the one that is (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let tessera = self.tessera.clone();
        Box::pin(async move {
            match tessera.authenticate(req.method(), req.headers()).await {
                Ok(who) => {
                    req.extensions_mut().insert(who);
                    inner.call(req).await.map(IntoResponse::into_response)
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!("Authenticated extracted on a route without the tessera layer");
            Rejection::new(Kind::NoLayer)
        })
    }
}
