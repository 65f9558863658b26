//! Node calls made with a session cookie instead of a bearer handle: the
//! browser never holds a handle. The proxy reads the call's paths, checks
//! each against the rights the site's config gives the session
//! ([`crate::auth::access`]) and makes the call with its own handle. A call
//! that changes something must come from the site's own pages (CSRF).

use bytes::Bytes;
use grove_core::SiteName;
use grove_core::api_error::ApiFailure;
use grove_core::node_api::{CreateRequest, TsReply, TxnRequest, WriteRequest};
use grove_core::token::Right;
use http::{Method, StatusCode, header};

use crate::auth::access::Access;
use crate::auth::sessions::Session;
use crate::auth::{cookies, cross_site_refused, query_value, same_origin};
use crate::node_client::{Caller, NodeClient};
use crate::pages::seen;
use crate::reply::{FailureReply, Reply};
use crate::request::Request;

/// Makes node call `call` (`read`, `write`, `create`, `txn`) for a session.
pub async fn call(
    node: &NodeClient,
    access: &Access,
    site: &SiteName,
    session: &Session,
    call: &str,
    request: &Request<'_>,
    body: Bytes,
) -> Reply {
    if *request.method != Method::GET && !same_origin(request) {
        return cross_site_refused();
    }
    let checks = match needed_rights(call, request, &body) {
        Ok(checks) => checks,
        Err(failure) => return failure.into_reply(),
    };
    for (path, right) in &checks {
        if !access.grants(&session.record, path, *right) {
            return ApiFailure::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this session may not {right} {path}"),
            )
            .into_reply();
        }
    }
    match node
        .forward(Caller::Users, request.method.clone(), site, call, request.query, body)
        .await
    {
        Ok(reply) => {
            // The writer's next page load reflects its write (read-your-writes).
            let written = (reply.status == StatusCode::OK && matches!(call, "write" | "txn"))
                .then(|| serde_json::from_slice::<TsReply>(&reply.body).ok())
                .flatten();
            let mut answer = reply.into_reply();
            if let Some(written) = written {
                answer.set(
                    header::SET_COOKIE,
                    cookies::set(seen::SEEN_COOKIE, &written.ts.to_string(), seen::SEEN_COOKIE_SECS),
                );
            }
            answer
        }
        Err(failure) => failure.into_reply(),
    }
}

/// The `(path, right)` pairs a call needs, read from its query or body.
fn needed_rights(call: &str, request: &Request<'_>, body: &[u8]) -> Result<Vec<(String, Right)>, ApiFailure> {
    let method = request.method;
    let wrong_method = |wanted: &str| {
        ApiFailure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{call} takes {wanted}"),
        )
    };
    let json_error = |error: serde_json::Error| ApiFailure::bad_request(format!("invalid JSON body: {error}"));
    match call {
        "read" => {
            if *method != Method::GET {
                return Err(wrong_method("GET"));
            }
            let path =
                query_value(request.query, "path").ok_or_else(|| ApiFailure::bad_request("the query needs path"))?;
            Ok(vec![(path, Right::Read)])
        }
        "write" | "create" if *method != Method::POST => Err(wrong_method("POST")),
        "write" => {
            let write: WriteRequest = serde_json::from_slice(body).map_err(json_error)?;
            Ok(vec![(write.path, Right::Write)])
        }
        "create" => {
            let create: CreateRequest = serde_json::from_slice(body).map_err(json_error)?;
            Ok(vec![(create.path, Right::Write)])
        }
        "txn" => {
            if *method != Method::POST {
                return Err(wrong_method("POST"));
            }
            let txn: TxnRequest = serde_json::from_slice(body).map_err(json_error)?;
            let mut checks = vec![(txn.path.clone(), Right::Read)];
            checks.extend(
                txn.writes
                    .into_iter()
                    .map(|write| (write.path.unwrap_or_else(|| txn.path.clone()), Right::Write)),
            );
            Ok(checks)
        }
        "watch" => Err(ApiFailure::new(
            StatusCode::BAD_REQUEST,
            "use_live",
            "a signed-in page subscribes with /_grove/live?path=<path>",
        )),
        _ => Err(ApiFailure::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("a session may read, write, create and txn, not {call}; use a bearer handle"),
        )),
    }
}
