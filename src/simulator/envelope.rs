//! Joe Sandbox response envelopes: `{"data": ...}` (+ `pagination`) and
//! `{"errors": [{"code", "message"}]}`, plus the HTTP status chosen for each error code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An API error as the service reports it. The status is always ≥ 400: jbxapi treats anything
/// below as success and would go looking for `data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: i64,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        let status = if status.as_u16() < 400 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        };
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// Code 1 for an exhausted quota.
    pub(crate) fn quota(limit: u64, period: &str) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            1,
            format!("number of allowed submissions ({limit}) per {period} have been reached"),
        )
    }

    /// Code 1 without `accept-tac=1` in cloud mode; jbxapi surfaces it as a plain `ApiError`.
    pub(crate) fn terms_not_accepted() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            1,
            "You have to agree to the Terms and Conditions!",
        )
    }

    /// Code 2, `Missing parameter <name>.`
    pub(crate) fn missing(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2,
            format!("Missing parameter {name}."),
        )
    }

    /// Code 2 with a free message (e.g. "exactly one of ...").
    pub(crate) fn missing_msg(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 2, message)
    }

    /// Code 3 for a bad parameter value or request.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 3, message)
    }

    /// Code 3, `Unknown parameter <name>.`, the exact text jbxapi's chunked fallback looks for.
    pub(crate) fn unknown_parameter(name: &str) -> Self {
        Self::invalid(format!("Unknown parameter {name}."))
    }

    /// Code 3 with HTTP 404 for ids that do not exist (any more).
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, 3, message)
    }

    pub(crate) fn invalid_api_key() -> Self {
        Self::new(StatusCode::FORBIDDEN, 4, "Invalid API key.")
    }

    pub(crate) fn offline() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            5,
            "The server is currently offline for maintenance.",
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 6, message)
    }

    pub(crate) fn unknown_endpoint() -> Self {
        Self::new(StatusCode::NOT_FOUND, 8, "Unknown endpoint.")
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            8,
            "Unknown endpoint. Every API call is a POST request.",
        )
    }

    pub(crate) fn body(&self) -> Value {
        json!({"errors": [{"code": self.code, "message": self.message}]})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body())
    }
}

/// `{"data": data}`, plus `"pagination": {"next": token}` only while more pages exist. The key is
/// omitted on the last page: jbxapi crashes on `"pagination": null`.
pub(crate) fn success(data: Value, next_page: Option<String>) -> Response {
    let mut body = serde_json::Map::new();
    body.insert("data".into(), data);
    if let Some(next) = next_page {
        body.insert("pagination".into(), json!({ "next": next }));
    }
    json_response(StatusCode::OK, &Value::Object(body))
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A proxy-style HTML error page, for the non-JSON fault.
pub(crate) fn html_error_page(status: StatusCode) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let page = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n\
         <center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
         </body>\r\n</html>\r\n"
    );
    let mut response = (status, page).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_never_use_a_success_status() {
        let error = ApiError::new(StatusCode::OK, 6, "x");
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn error_body_has_the_joe_shape() {
        let body = ApiError::missing("apikey").body();
        assert_eq!(
            body,
            json!({"errors": [{"code": 2, "message": "Missing parameter apikey."}]})
        );
    }
}
