//! The one error type of the HTTP layer: `{"error": {"code", "message"}}` with the status of
//! its kind (the table in design.md), `x-kumo-error` and, when throttled, `Retry-After`.

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::QueryRejection;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use kumo_core::ErrorKind;

pub(crate) const ERROR_HEADER: &str = "x-kumo-error";

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn not_found(name: &str) -> Self {
        Self::new(
            ErrorKind::FunctionNotFound,
            format!("no function named {name:?}"),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidFunction, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }
}

/// Internal failures are logged here, once, and reach the client only as a generic message;
/// a full disk is said so (507), as the client can do something about it.
impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        if kumo_store::is_disk_full(&e) {
            tracing::warn!("refused for a full disk: {e:#}");
            return insufficient_storage();
        }
        tracing::error!("internal error: {e:#}");
        Self::new(ErrorKind::Internal, "internal error; see the server log")
    }
}

/// New data refused because the data directory's disk is (nearly) full.
pub(crate) fn insufficient_storage() -> ApiError {
    ApiError::new(
        ErrorKind::InsufficientStorage,
        "the data directory's disk is full; new data is refused until space is freed (deletes still work)",
    )
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(e: MultipartRejection) -> Self {
        Self::bad_request(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    }
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> Self {
        if let Some(stalled) = crate::connections::stalled(&e) {
            return Self::new(ErrorKind::RequestTimeout, stalled.to_string());
        }
        let kind = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorKind::PayloadTooLarge
        } else {
            ErrorKind::InvalidRequest
        };
        Self::new(
            kind,
            format!("reading the multipart body: {}", e.body_text()),
        )
    }
}

/// Every error answer's body: `{"error": {"code", "message"}}`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// One of the stable error codes (README's error table).
    code: ErrorKind,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: self.kind,
                message: self.message,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(ERROR_HEADER, HeaderValue::from_static(self.kind.code()));
        if matches!(self.kind, ErrorKind::Throttled | ErrorKind::Unavailable) {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.kind == ErrorKind::Unauthorized {
            headers.insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// Gives the one error shape to the refusals that axum's router and extractors answer
/// themselves (a path that is not UTF-8, an unknown method on `/healthz`, a body of the wrong
/// type), which come out as text or empty. Responses that already carry `x-kumo-error`, and
/// functions' own responses (they carry a request id), are left as they are.
pub(crate) async fn in_error_shape(response: Response) -> Response {
    let status = response.status();
    let headers = response.headers();
    if !(status.is_client_error() || status.is_server_error())
        || headers.contains_key(ERROR_HEADER)
        || headers.contains_key(crate::gateway::REQUEST_ID_HEADER)
    {
        return response;
    }
    let kind = match status.as_u16() {
        404 => ErrorKind::NotFound,
        405 => ErrorKind::MethodNotAllowed,
        408 => ErrorKind::RequestTimeout,
        413 => ErrorKind::PayloadTooLarge,
        400..=499 => ErrorKind::InvalidRequest,
        _ => ErrorKind::Internal,
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match text.is_empty() {
        true => status
            .canonical_reason()
            .unwrap_or("refused")
            .to_ascii_lowercase(),
        false => text,
    };
    let mut shaped = ApiError::new(kind, message).into_response();
    // The status stays what it was (415 stays 415); `Allow` of a 405 is kept.
    *shaped.status_mut() = status;
    if let Some(allow) = parts.headers.get(http::header::ALLOW) {
        shaped
            .headers_mut()
            .insert(http::header::ALLOW, allow.clone());
    }
    shaped
}
