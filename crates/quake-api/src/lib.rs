#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod client;
mod error;
mod event;
mod http;
mod paging;
mod parse;
mod push;
mod query;

pub use client::{
    EMSC_FDSN_QUERY_URL, EmscClient, FdsnClient, FdsnPager, FeedClient, FeedPoll,
    USGS_FDSN_QUERY_URL, USGS_FEED_URL,
};
pub use error::ApiError;
pub use event::{Event, Page, RejectedRecord, SourceKind, validate_event};
pub use http::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MAX_RETRIES,
    DEFAULT_RETRY_AFTER_MAX, DEFAULT_TIMEOUT, HttpOptions, Validators, check_url,
};
pub use paging::{Keyset, PageAsk, PagingError, WHOLE_SECOND_LIMIT, pages_for_count};
pub use parse::{
    CountResponse, EMSC_EVENT_URL_BASE, PushAction, parse_emsc, parse_emsc_push, parse_usgs_any,
    parse_usgs_collection, parse_usgs_count, parse_usgs_feature,
};
pub use push::{
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_PING_INTERVAL, DEFAULT_PUSH_BUFFER, DEFAULT_READ_TIMEOUT,
    DEFAULT_RECONNECT_BASE, DEFAULT_RECONNECT_MAX, EMSC_WEBSOCKET_URL, EmscPush, PushMessage,
    PushOptions,
};
pub use query::{FdsnQuery, USGS_MAX_LIMIT, fdsn_time};
