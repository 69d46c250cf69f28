//! A body wrapper that tells when a body has ended and how many bytes it carried, and keeps a
//! bounded copy of its first bytes when asked: what metrics (request duration) and audit events
//! (`ResponseComplete`, request and response objects) need, without buffering the stream.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::upstream::{Body, BoxError};

/// A bounded copy of a body's bytes: `None` once the body outgrew the limit.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    bytes: Arc<Mutex<Option<BytesMut>>>,
}

impl Captured {
    fn new() -> Self {
        Self {
            bytes: Arc::new(Mutex::new(Some(BytesMut::new()))),
        }
    }

    fn append(&self, data: &Bytes, limit: usize) {
        let mut slot = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(buffer) = slot.as_mut() {
            if buffer.len() + data.len() > limit {
                *slot = None;
            } else {
                buffer.extend_from_slice(data);
            }
        }
    }

    /// The bytes seen so far, or `None` when the body outgrew the limit.
    pub fn bytes(&self) -> Option<Bytes> {
        let slot = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref().map(|b| Bytes::copy_from_slice(b))
    }
}

/// How a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyEnd {
    /// Data bytes that went through.
    pub bytes: u64,
    /// The end of the stream was reached (false: an error, or dropped before the end, e.g. the
    /// client went away).
    pub completed: bool,
}

type OnEnd = Box<dyn FnOnce(BodyEnd) + Send + Sync>;

pin_project! {
    /// A body that reports its end once (end of stream, error or drop).
    pub struct ObservedBody {
        #[pin]
        inner: Body,
        bytes: u64,
        capture: Option<(Captured, usize)>,
        on_end: Option<OnEnd>,
    }

    impl PinnedDrop for ObservedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(on_end) = this.on_end.take() {
                on_end(BodyEnd { bytes: *this.bytes, completed: false });
            }
        }
    }
}

impl ObservedBody {
    /// Wraps `inner`; `on_end` runs once when it ends.
    pub fn new(inner: Body, on_end: impl FnOnce(BodyEnd) + Send + Sync + 'static) -> Self {
        Self {
            inner,
            bytes: 0,
            capture: None,
            on_end: Some(Box::new(on_end)),
        }
    }

    /// Wraps `inner` with nothing to report yet (see [`ObservedBody::on_end`]).
    pub fn passing(inner: Body) -> Self {
        Self {
            inner,
            bytes: 0,
            capture: None,
            on_end: None,
        }
    }

    /// Wraps `inner` keeping a copy of at most `limit` bytes (none if it is longer).
    pub fn capturing(inner: Body, limit: usize) -> (Self, Captured) {
        let captured = Captured::new();
        let body = Self {
            inner,
            bytes: 0,
            capture: Some((captured.clone(), limit)),
            on_end: None,
        };
        (body, captured)
    }

    /// Sets the end callback.
    pub fn on_end(mut self, on_end: impl FnOnce(BodyEnd) + Send + Sync + 'static) -> Self {
        self.on_end = Some(Box::new(on_end));
        self
    }
}

impl HttpBody for ObservedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                    if let Some((captured, limit)) = this.capture.as_ref() {
                        captured.append(data, *limit);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Some(on_end) = this.on_end.take() {
                    on_end(BodyEnd {
                        bytes: *this.bytes,
                        completed: true,
                    });
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(on_end) = this.on_end.take() {
                    on_end(BodyEnd {
                        bytes: *this.bytes,
                        completed: false,
                    });
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::boxed;
    use http_body_util::{BodyExt, Full, StreamBody};

    fn ended() -> (Arc<Mutex<Vec<BodyEnd>>>, impl FnOnce(BodyEnd) + Send + Sync) {
        let ends = Arc::new(Mutex::new(Vec::new()));
        let sink = ends.clone();
        (ends, move |end| sink.lock().unwrap().push(end))
    }

    #[tokio::test]
    async fn reports_the_end_once_with_the_byte_count() {
        let (ends, on_end) = ended();
        let body = ObservedBody::new(boxed(Full::new(Bytes::from_static(b"hello"))), on_end);
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(collected, "hello");
        assert_eq!(
            *ends.lock().unwrap(),
            vec![BodyEnd {
                bytes: 5,
                completed: true
            }]
        );
    }

    #[tokio::test]
    async fn a_body_dropped_early_reports_an_incomplete_end() {
        let (ends, on_end) = ended();
        let chunks = futures_util::stream::iter(vec![
            Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"ab"))),
            Ok(Frame::data(Bytes::from_static(b"cd"))),
        ]);
        let mut body = ObservedBody::new(boxed(StreamBody::new(chunks)), on_end);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        drop(body);
        assert_eq!(
            *ends.lock().unwrap(),
            vec![BodyEnd {
                bytes: 2,
                completed: false
            }]
        );
    }

    #[tokio::test]
    async fn captures_up_to_the_limit_and_nothing_beyond() {
        let (small, captured) =
            ObservedBody::capturing(boxed(Full::new(Bytes::from_static(b"{\"a\":1}"))), 16);
        small.collect().await.unwrap();
        assert_eq!(captured.bytes().unwrap(), "{\"a\":1}");

        let (large, captured) =
            ObservedBody::capturing(boxed(Full::new(Bytes::from(vec![b'x'; 17]))), 16);
        let all = large.collect().await.unwrap().to_bytes();
        assert_eq!(all.len(), 17, "the stream itself is never cut");
        assert_eq!(captured.bytes(), None);
    }
}
