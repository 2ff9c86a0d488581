//! Answers and request parsing shared by every endpoint: the `ApiCallRc` list with LINSTOR's
//! status mapping, a JSON body extractor that answers malformed input with an `ApiCallRc`
//! instead of plain text, and list query parameters.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use ferrite_types::api_call_rc::code;
use ferrite_types::{ApiCallRc, RetCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::Failure;
use crate::app::views::ListFilter;

/// The HTTP status for an `ApiCallRc` list: decided by the first error entry, else `success`.
///
/// LINSTOR maps every error that is not "not found" or "access denied" to 500. Ferrite answers
/// bad input with 4xx, so clients and operators can tell their mistake from a server fault:
/// invalid input 400, not found 404, access denied 403, already exists / in use / cannot be
/// placed 409, internal failures 500. Clients that follow LINSTOR read the body either way.
pub fn status_for(entries: &[ApiCallRc], success: StatusCode) -> StatusCode {
    let Some(error) = entries.iter().find(|e| e.is_error()) else {
        return success;
    };
    let rc = error.ret_code();
    if rc.bits() & !ferrite_types::api_call_rc::mask::TYPE_BITS == code::API_CALL_PARSE_ERROR {
        return StatusCode::BAD_REQUEST;
    }
    if rc.bits() & !ferrite_types::api_call_rc::mask::TYPE_BITS == code::UNKNOWN_API_CALL {
        return StatusCode::NOT_FOUND;
    }
    match rc.code() {
        200..=299 | 600..=699 => StatusCode::BAD_REQUEST,
        300..=399 => StatusCode::NOT_FOUND,
        400..=499 => StatusCode::FORBIDDEN,
        500..=599 | 700..=899 | 970..=997 => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An answer: an `ApiCallRc` list or a pre-serialized JSON document.
pub struct ApiResponse {
    status: StatusCode,
    body: Vec<u8>,
}

impl ApiResponse {
    /// The answer to a mutating call.
    pub fn entries(success: StatusCode, result: Result<Vec<ApiCallRc>, Failure>) -> ApiResponse {
        let entries = match result {
            Ok(entries) => entries,
            Err(Failure(entries)) => entries,
        };
        let status = status_for(&entries, success);
        ApiResponse {
            status,
            body: serde_json::to_vec(&entries).expect("ApiCallRc serializes"),
        }
    }

    /// A successful GET.
    pub fn json<T: Serialize>(value: &T) -> ApiResponse {
        ApiResponse {
            status: StatusCode::OK,
            body: serde_json::to_vec(value).expect("REST shapes serialize"),
        }
    }

    /// A JSON array of `items`, serialized one at a time, so a list never exists twice in
    /// memory (as values and as text).
    pub fn json_array<T: Serialize>(items: impl Iterator<Item = T>) -> ApiResponse {
        let mut body = Vec::with_capacity(64 * 1024);
        body.push(b'[');
        for (index, item) in items.enumerate() {
            if index > 0 {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, &item).expect("REST shapes serialize");
        }
        body.push(b']');
        ApiResponse {
            status: StatusCode::OK,
            body,
        }
    }

    /// A GET that may fail with an `ApiCallRc` list.
    pub fn read<T: Serialize>(result: Result<T, Failure>) -> ApiResponse {
        match result {
            Ok(value) => ApiResponse::json(&value),
            Err(failure) => ApiResponse::entries(StatusCode::OK, Err(failure)),
        }
    }

    /// A single error entry with an explicit status.
    pub fn error(status: StatusCode, rc: ApiCallRc) -> ApiResponse {
        ApiResponse {
            status,
            body: serde_json::to_vec(&[rc]).expect("ApiCallRc serializes"),
        }
    }
}

impl IntoResponse for ApiResponse {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response()
    }
}

/// A JSON object request body; malformed input is answered with a 400 `ApiCallRc`. The
/// Content-Type header is not required: python-linstor sends none. A body that is not a JSON
/// object is refused, even where serde would read an array as the struct's fields in order.
pub struct JsonBody<T>(pub T);

/// A JSON array request body (only `POST …/resources` takes one); otherwise as [`JsonBody`].
pub struct JsonArrayBody<T>(pub Vec<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiResponse;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(request, state, BodyShape::Object)
            .await
            .map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonArrayBody<T> {
    type Rejection = ApiResponse;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(request, state, BodyShape::Array)
            .await
            .map(JsonArrayBody)
    }
}

/// The top-level JSON value a call takes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyShape {
    Object,
    Array,
}

impl BodyShape {
    fn opening(self) -> u8 {
        match self {
            BodyShape::Object => b'{',
            BodyShape::Array => b'[',
        }
    }

    fn describe(self) -> &'static str {
        match self {
            BodyShape::Object => "a JSON object ({...})",
            BodyShape::Array => "a JSON array ([...])",
        }
    }
}

async fn read_json<S: Send + Sync, T: DeserializeOwned>(
    request: Request,
    state: &S,
    shape: BodyShape,
) -> Result<T, ApiResponse> {
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| {
            if let Some(error) = super::server::body_read_error(&rejection) {
                return ApiResponse::error(
                    StatusCode::REQUEST_TIMEOUT,
                    ApiCallRc::new(
                        RetCode::error(code::FAIL_INVLD_REQUEST),
                        "The request body did not arrive in time.",
                    )
                    .cause(error.to_string())
                    .correction("Send the whole request body without pausing."),
                );
            }
            ApiResponse::error(
                rejection.status(),
                ApiCallRc::new(
                    RetCode::error(code::API_CALL_PARSE_ERROR),
                    "The request body could not be read.",
                )
                .cause(rejection.body_text())
                .correction("Send a JSON body of at most 2 MiB."),
            )
        })?;
    let unparsable = |cause: String| {
        ApiResponse::error(
            StatusCode::BAD_REQUEST,
            ApiCallRc::new(
                RetCode::error(code::API_CALL_PARSE_ERROR),
                "The request body is not valid for this call.",
            )
            .cause(cause)
            .correction(
                "Send JSON as described in the controller's OpenAPI document (GET /openapi.json).",
            ),
        )
    };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
    let text: &[u8] = match first {
        // An empty body means "no fields", as LINSTOR's clients sometimes send.
        None if shape == BodyShape::Object => b"{}",
        Some(byte) if byte == shape.opening() => &bytes,
        _ => {
            return Err(unparsable(format!(
                "this call takes {}, the body starts with {}",
                shape.describe(),
                match first {
                    Some(byte) if byte.is_ascii_graphic() => format!("'{}'", char::from(byte)),
                    Some(byte) => format!("byte 0x{byte:02x}"),
                    None => "nothing (it is empty)".to_owned(),
                }
            )));
        }
    };
    serde_json::from_slice(text).map_err(|e| unparsable(e.to_string()))
}

/// The query parameters list endpoints take: repeated keys (`?nodes=a&nodes=b`) and paging.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub filter: ListFilter,
    pub with_volume_definitions: bool,
    pub keep_tiebreaker: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiResponse;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut query = ListQuery::default();
        let raw = parts.uri.query().unwrap_or("");
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            let value = value.into_owned();
            let number = |name: &str| -> Result<usize, ApiResponse> {
                value.parse().map_err(|_| {
                    ApiResponse::error(
                        StatusCode::BAD_REQUEST,
                        ApiCallRc::new(
                            RetCode::error(code::FAIL_INVLD_REQUEST),
                            format!("Query parameter {name}='{value}' is not a number."),
                        )
                        .correction(format!(
                            "Give {name} as a whole number (limit=0 means no limit)."
                        )),
                    )
                })
            };
            let flag = value.eq_ignore_ascii_case("true") || value == "1";
            match key.as_ref() {
                "nodes" => query.filter.nodes.push(value),
                "resources" | "resource_definitions" => query.filter.resources.push(value),
                "storage_pools" => query.filter.storage_pools.push(value),
                "resource_groups" => query.filter.resource_groups.push(value),
                "props" => query.filter.props.push(value),
                "limit" => query.filter.limit = number("limit")?,
                "offset" => query.filter.offset = number("offset")?,
                "with_volume_definitions" => query.with_volume_definitions = flag,
                "keep_tiebreaker" => query.keep_tiebreaker = flag,
                _ => {}
            }
        }
        Ok(query)
    }
}

/// Path parameters; a malformed one (e.g. a volume number that is not a number) is answered
/// with a 400 `ApiCallRc`.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiResponse;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|rejection| {
                ApiResponse::error(
                    StatusCode::BAD_REQUEST,
                    ApiCallRc::new(
                        RetCode::error(code::FAIL_INVLD_REQUEST),
                        "Invalid path parameter.",
                    )
                    .cause(rejection.body_text())
                    .correction(
                        "Check the URL: volume numbers are whole numbers between 0 and 65535.",
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrite_types::api_call_rc::mask;

    fn error(code_value: u64) -> ApiCallRc {
        ApiCallRc::new(RetCode::error(code_value | mask::NODE | mask::CRT), "x")
    }

    #[test]
    fn status_mapping() {
        assert_eq!(status_for(&[], StatusCode::CREATED), StatusCode::CREATED);
        let warn = ApiCallRc::new(RetCode::warn(code::WARN_NOT_CONNECTED), "w");
        assert_eq!(
            status_for(std::slice::from_ref(&warn), StatusCode::CREATED),
            StatusCode::CREATED
        );
        assert_eq!(
            status_for(&[error(code::FAIL_NOT_FOUND_NODE)], StatusCode::OK),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_for(&[error(code::FAIL_INVLD_NODE_NAME)], StatusCode::OK),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_for(&[error(code::FAIL_EXISTS_NODE)], StatusCode::OK),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_for(&[error(code::FAIL_NOT_ENOUGH_NODES)], StatusCode::OK),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_for(&[error(code::FAIL_UNKNOWN_ERROR)], StatusCode::OK),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_for(&[warn, error(code::FAIL_NOT_FOUND_RSC)], StatusCode::OK),
            StatusCode::NOT_FOUND
        );
        let parse = ApiCallRc::new(RetCode::error(code::API_CALL_PARSE_ERROR), "p");
        assert_eq!(
            status_for(&[parse], StatusCode::OK),
            StatusCode::BAD_REQUEST
        );
    }
}
