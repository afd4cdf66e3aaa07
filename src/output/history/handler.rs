//! The `/api/v1/history` handler: validates the query (400 with a one-line reason), copies the
//! history out under its lock and serialises after.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query as QueryString, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::json::Query;
use super::History;

pub async fn history(
    State(history): State<Arc<History>>,
    pairs: Result<QueryString<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let parsed = match pairs {
        Ok(QueryString(pairs)) => Query::parse(&pairs),
        Err(e) => Err(format!("the query string cannot be read: {e}")),
    };
    match parsed {
        Ok(q) => Json(history.query(&q)).into_response(),
        Err(why) => (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
    }
}
