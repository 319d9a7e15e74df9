//! How records are encoded in the store: JSON of the serde form (readable with any redb tool,
//! tolerant of added optional fields).

use openraft::{AnyError, StorageIOError};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::NodeId;

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(v)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(bytes)
}

pub(crate) fn read_err(e: impl std::error::Error + 'static) -> openraft::StorageError<NodeId> {
    StorageIOError::<NodeId>::read(AnyError::new(&e)).into()
}

pub(crate) fn write_err(e: impl std::error::Error + 'static) -> openraft::StorageError<NodeId> {
    StorageIOError::<NodeId>::write(AnyError::new(&e)).into()
}

pub(crate) fn read_logs_err(e: impl std::error::Error + 'static) -> openraft::StorageError<NodeId> {
    StorageIOError::<NodeId>::read_logs(AnyError::new(&e)).into()
}

pub(crate) fn write_logs_err(e: impl std::error::Error + 'static) -> openraft::StorageError<NodeId> {
    StorageIOError::<NodeId>::write_logs(AnyError::new(&e)).into()
}
