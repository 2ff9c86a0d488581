//! Answers and request parsing shared by every endpoint: the `ApiCallRc` list with LINSTOR's
//! status mapping, the error answers as the OpenAPI document lists them, a JSON body extractor
//! that answers malformed or out-of-range input with an `ApiCallRc` instead of plain text, and
//! a path extractor that does the same. Query parameters are `super::query`'s.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use ferrite_types::api_call_rc::{code, mask};
use ferrite_types::rest::validate::Validate;
use ferrite_types::{ApiCallRc, RetCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::ArrayBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

use crate::app::Failure;

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

    /// A JSON document answered with `status` (e.g. a clone's start, whose messages may hold
    /// errors).
    pub fn json_with_status<T: Serialize>(status: StatusCode, value: &T) -> ApiResponse {
        ApiResponse {
            status,
            body: serde_json::to_vec(value).expect("answers serialize"),
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

/// The documented answer with `status`: an `ApiCallRc` list.
fn api_call_rc_list(
    status: StatusCode,
    description: &str,
) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    let list = ArrayBuilder::new().items(Ref::from_schema_name("ApiCallRc"));
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(list)).build(),
        )
        .build();
    BTreeMap::from([(status.as_str().to_string(), RefOr::T(response))])
}

/// Error answers as the OpenAPI document lists them (`responses(…, Invalid, NotFound)`): each
/// an `ApiCallRc` list whose first error decides the status ([`status_for`]).
macro_rules! error_answers {
    ($($(#[$doc:meta])* $name:ident => $status:expr, $description:literal;)+) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl utoipa::IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                    api_call_rc_list($status, $description)
                }
            }
        )+
    };
}

error_answers! {
    /// 400: the request is malformed or a value breaks a rule.
    Invalid => StatusCode::BAD_REQUEST,
        "Invalid input: a body, path or query parameter that cannot be parsed, or a value the rules refuse (FAIL_INVLD_*). Nothing was changed.";
    /// 404: an object the request names does not exist.
    NotFound => StatusCode::NOT_FOUND,
        "An object the request names does not exist (FAIL_NOT_FOUND_*). Nothing was changed.";
    /// 409: the request conflicts with the cluster's state.
    Conflict => StatusCode::CONFLICT,
        "The request conflicts with the cluster: the object exists, is in use, or cannot be placed (FAIL_EXISTS_*, FAIL_IN_USE, FAIL_NOT_ENOUGH_NODES, ...). Nothing was changed.";
    /// 413: the body is larger than the controller reads.
    TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        "The request body is larger than 2 MiB. Nothing was changed.";
    /// 500: the controller failed; the answer names an error report.
    Internal => StatusCode::INTERNAL_SERVER_ERROR,
        "The controller failed to carry out the request (e.g. its store could not commit); the change was not made.";
}

/// A JSON object request body; malformed input is answered with a 400 `ApiCallRc`. The
/// Content-Type header is not required: python-linstor sends none. A body that is not a JSON
/// object is refused, even where serde would read an array as the struct's fields in order.
/// A body that parses is then checked with [`Validate`]: a value out of range is answered with
/// a 400 and its own `FAIL_INVLD_*` code before the request reaches the object model.
pub struct JsonBody<T>(pub T);

/// A JSON array request body (only `POST …/resources` takes one); otherwise as [`JsonBody`].
pub struct JsonArrayBody<T>(pub Vec<T>);

impl<S: Send + Sync, T: DeserializeOwned + Validate> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiResponse;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let operation = operation_mask(request.method());
        let body: T = read_json(request, state, BodyShape::Object).await?;
        checked(operation, body).map(JsonBody)
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Validate> FromRequest<S> for JsonArrayBody<T> {
    type Rejection = ApiResponse;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let operation = operation_mask(request.method());
        let body: Vec<T> = read_json(request, state, BodyShape::Array).await?;
        checked(operation, body).map(JsonArrayBody)
    }
}

/// The operation bits of a `ret_code` for a request with `method`.
fn operation_mask(method: &Method) -> u64 {
    match *method {
        Method::POST => mask::CRT,
        Method::DELETE => mask::DEL,
        _ => mask::MOD,
    }
}

/// `body` if its values are in range, else the 400 answer naming the first that is not.
fn checked<T: Validate>(operation: u64, body: T) -> Result<T, ApiResponse> {
    match body.validate() {
        Ok(()) => Ok(body),
        Err(invalid) => Err(ApiResponse::error(
            StatusCode::BAD_REQUEST,
            ApiCallRc::new(
                RetCode::error(invalid.code | operation),
                invalid.to_string(),
            )
            .cause(invalid.reason)
            .correction(invalid.correction),
        )),
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
        // An empty body means "no fields", as LINSTOR's clients sometimes send; so does a JSON
        // null, which the document allows where the body is optional.
        None if shape == BodyShape::Object => b"{}",
        Some(b'n') if shape == BodyShape::Object && bytes.trim_ascii() == b"null" => b"{}",
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
                        "Check the URL: volume numbers are whole numbers between 0 and 65535, \
                         names as GET /openapi.json describes them.",
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
