//! An environment's stdout+stderr pipe, turned into log lines.
//!
//! A background task reads as output arrives; the invoke path also drains the pipe
//! synchronously right after the function responds, so everything the function printed
//! before responding lands before `END` and in `--log-type Tail`.
use parking_lot::Mutex;
use std::io::ErrorKind;
use std::sync::Arc;
use tokio::net::unix::pipe;

pub(crate) struct LogPipe {
    rx: pipe::Receiver,
    state: Mutex<PipeState>,
    sink: Box<dyn Fn(&str) + Send + Sync>,
}

#[derive(Default)]
struct PipeState {
    partial: Vec<u8>,
    eof: bool,
}

impl LogPipe {
    /// `sink` receives each complete line, without its newline.
    pub(crate) fn new(rx: pipe::Receiver, sink: Box<dyn Fn(&str) + Send + Sync>) -> Arc<LogPipe> {
        let pipe = Arc::new(LogPipe { rx, state: Mutex::new(PipeState::default()), sink });
        let reader = pipe.clone();
        tokio::spawn(async move {
            loop {
                if reader.rx.readable().await.is_err() {
                    break;
                }
                if reader.drain(false) {
                    break;
                }
            }
        });
        pipe
    }

    /// Reads whatever is buffered now; with `flush_partial`, a trailing line without a
    /// newline is emitted too. Returns true at end of file.
    pub(crate) fn drain(&self, flush_partial: bool) -> bool {
        let mut st = self.state.lock();
        let mut buf = [0u8; 16 * 1024];
        while !st.eof {
            match self.rx.try_read(&mut buf) {
                Ok(0) => st.eof = true,
                Ok(n) => {
                    st.partial.extend_from_slice(&buf[..n]);
                    while let Some(pos) = st.partial.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = st.partial.drain(..=pos).collect();
                        (self.sink)(&String::from_utf8_lossy(&line[..line.len() - 1]));
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => st.eof = true,
            }
        }
        if (flush_partial || st.eof) && !st.partial.is_empty() {
            let line = std::mem::take(&mut st.partial);
            (self.sink)(&String::from_utf8_lossy(&line));
        }
        st.eof
    }
}
