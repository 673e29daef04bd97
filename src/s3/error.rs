//! The one mapping from the file service's errors to S3 error codes. What
//! an error means depends on what was asked (a missing key is NoSuchKey for
//! an object and NoSuchBucket for a bucket): the handlers map the cases
//! they know first and hand the rest to [`to_s3`].

use s3s::{S3Error, S3ErrorCode};

use crate::error::Error;

/// The S3 error for a service error, by kind.
pub fn to_s3(e: Error) -> S3Error {
    let code = match &e {
        Error::NotFound(_) => S3ErrorCode::NoSuchKey,
        Error::InvalidKey(_) | Error::InvalidArgument(_) => S3ErrorCode::InvalidArgument,
        Error::NameTooLong(_) => S3ErrorCode::KeyTooLongError,
        Error::TooLarge(_) => S3ErrorCode::EntityTooLarge,
        // A key that goes through a file, or names a directory: the
        // namespace cannot hold that object.
        Error::NotADirectory(_) | Error::IsADirectory(_) | Error::AlreadyExists(_) => {
            S3ErrorCode::InvalidArgument
        }
        Error::NotEmpty(_) => S3ErrorCode::BucketNotEmpty,
        Error::PermissionDenied(_) => S3ErrorCode::AccessDenied,
        Error::Unavailable(_) | Error::ReadOnly(_) | Error::NoSpace(_) => {
            S3ErrorCode::ServiceUnavailable
        }
        _ => S3ErrorCode::InternalError,
    };
    if code == S3ErrorCode::InternalError {
        log::error!("S3 API: {e}");
    }
    S3Error::with_message(code, e.to_string())
}

/// NoSuchKey naming the key asked for.
pub fn no_such_key(key: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchKey,
        format!("The specified key does not exist: {key}"),
    )
}

/// NoSuchBucket naming the bucket asked for.
pub fn no_such_bucket(bucket: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NoSuchBucket,
        format!("The specified bucket does not exist: {bucket}"),
    )
}
