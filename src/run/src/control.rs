//! The runner's side of the control plane.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};
use troupe_message::control::{read_frame, write_frame, Control, Hello, Report};

/// A report from the program tagged `tag` (`None`: its connection closed).
pub type Tagged = (String, Option<Report>);

/// An authenticated control connection to one program.
pub struct ControlClient {
    stream: TcpStream,
    /// How this program is tagged in logs: "0", "1", ..., "C".
    pub tag: String,
}

impl ControlClient {
    /// Connects to `addr` (retrying for up to `patience` while the program
    /// starts), presents `token`, and hands every later report to `sink`.
    pub fn connect(
        addr: SocketAddr,
        token: &str,
        tag: &str,
        patience: Duration,
        sink: SyncSender<Tagged>,
    ) -> io::Result<Self> {
        let deadline = Instant::now() + patience;
        let mut stream = loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_nodelay(true)?;
        write_frame(
            &mut stream,
            &Hello {
                token: token.to_string(),
            },
        )?;
        match read_frame::<Report>(&mut stream)? {
            Report::Ready => {}
            Report::Refused => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{addr} refused the token"),
                ))
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{addr} answered {other:?}"),
                ))
            }
        }
        let mut reader = stream.try_clone()?;
        let reader_tag = tag.to_string();
        std::thread::spawn(move || loop {
            match read_frame::<Report>(&mut reader) {
                Ok(report) => {
                    if sink.send((reader_tag.clone(), Some(report))).is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = sink.send((reader_tag.clone(), None));
                    return;
                }
            }
        });
        Ok(ControlClient {
            stream,
            tag: tag.to_string(),
        })
    }

    /// Sends one control message.
    pub fn send(&mut self, control: &Control) -> io::Result<()> {
        write_frame(&mut self.stream, control)
    }
}
