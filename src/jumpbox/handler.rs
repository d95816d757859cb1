//! The russh `Handler`: a thin adapter. Each callback becomes an [`Event`]
//! on a bounded channel to the connection's actor; where russh needs an
//! answer (authentication, opening a channel) the actor replies through a
//! oneshot. Channel requests are acknowledged here; the actor decides what
//! happens and says it on the channel. Port-forwarding channels go to the
//! connection's [`forward::Link`] instead, and their bytes never reach the
//! actor.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use russh::keys::PublicKey;
use russh::server::{
    Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId};
use tokio::sync::{mpsc, oneshot};

use super::forward;

/// What happened on the connection, for the actor.
pub enum Event {
    Password {
        login: String,
        password: String,
        reply: oneshot::Sender<bool>,
    },
    /// A key offered (not yet proven): is it one of the login's user?
    KeyOffered {
        login: String,
        key: PublicKey,
        reply: oneshot::Sender<bool>,
    },
    /// A key whose possession the client proved.
    Key {
        login: String,
        key: PublicKey,
        reply: oneshot::Sender<bool>,
    },
    ChannelOpen {
        channel: ChannelId,
        handle: Handle,
        reply: oneshot::Sender<bool>,
    },
    Pty {
        channel: ChannelId,
        term: String,
        cols: u32,
        rows: u32,
    },
    Shell {
        channel: ChannelId,
    },
    Exec {
        channel: ChannelId,
        command: String,
    },
    /// The `sftp` subsystem (sftp, scp).
    Sftp {
        channel: ChannelId,
    },
    Data {
        channel: ChannelId,
        data: Bytes,
    },
    WindowChange {
        channel: ChannelId,
        cols: u32,
        rows: u32,
    },
    Eof {
        channel: ChannelId,
    },
    Close {
        channel: ChannelId,
    },
}

pub struct Adapter {
    tx: mpsc::Sender<Event>,
    pub peer: Option<SocketAddr>,
    link: Arc<forward::Link>,
    /// The port-forwarding channels (their data is theirs, not the actor's).
    forwards: HashSet<ChannelId>,
    /// Refusals to tell on the session channel once it starts (`-R`).
    notices: Vec<&'static str>,
}

impl Adapter {
    pub fn new(
        tx: mpsc::Sender<Event>,
        peer: Option<SocketAddr>,
        link: Arc<forward::Link>,
    ) -> Self {
        Self {
            tx,
            peer,
            link,
            forwards: HashSet::new(),
            notices: Vec::new(),
        }
    }

    /// Tells the refusals held back for the session channel (stderr).
    fn tell_notices(&mut self, channel: ChannelId, session: &mut Session) {
        for n in self.notices.drain(..) {
            let _ = session.extended_data(channel, 1, Bytes::from_static(n.as_bytes()));
        }
    }

    /// Sends `event`; false when the actor is gone.
    async fn send(&self, event: Event) -> bool {
        self.tx.send(event).await.is_ok()
    }

    /// Sends an event that carries a reply and waits for the answer
    /// (no answer: refused).
    async fn ask(&self, make: impl FnOnce(oneshot::Sender<bool>) -> Event) -> bool {
        let (reply, answer) = oneshot::channel();
        self.send(make(reply)).await && answer.await.unwrap_or(false)
    }
}

const REMOTE_REFUSED: &str = "gpudock: remote port forwarding (-R) is not available: only ports of the \
     instance can be forwarded, with -L (不支持反向端口转发)\r\n";
const AGENT_REFUSED: &str =
    "gpudock: agent forwarding (-A) is not available through the jumpbox (不支持代理转发)\r\n";

fn auth(ok: bool) -> Auth {
    if ok { Auth::Accept } else { Auth::reject() }
}

impl russh::server::Handler for Adapter {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let (login, password) = (user.to_string(), password.to_string());
        Ok(auth(
            self.ask(|reply| Event::Password {
                login,
                password,
                reply,
            })
            .await,
        ))
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let (login, key) = (user.to_string(), offer.public_key.clone());
        Ok(auth(
            self.ask(|reply| Event::KeyOffered { login, key, reply })
                .await,
        ))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let (login, key) = (user.to_string(), key.public_key.clone());
        Ok(auth(
            self.ask(|reply| Event::Key { login, key, reply }).await,
        ))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (id, handle) = (channel.id(), session.handle());
        // The channel object is not used: data arrives through `data` below.
        drop(channel);
        if self
            .ask(|r| Event::ChannelOpen {
                channel: id,
                handle,
                reply: r,
            })
            .await
        {
            reply.accept().await;
        } else {
            reply
                .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
                .await;
        }
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let term = term.to_string();
        self.send(Event::Pty {
            channel,
            term,
            cols,
            rows,
        })
        .await;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.tell_notices(channel, session);
        self.send(Event::Shell { channel }).await;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        self.tell_notices(channel, session);
        let command = String::from_utf8_lossy(data).into_owned();
        self.send(Event::Exec { channel, command }).await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // SFTP (and scp, which speaks it) is the one subsystem there is.
        if name != "sftp" {
            session.channel_failure(channel)?;
            return Ok(());
        }
        session.channel_success(channel)?;
        self.send(Event::Sftp { channel }).await;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.forwards.contains(&channel) {
            return Ok(());
        }
        let data = Bytes::copy_from_slice(data);
        self.send(Event::Data { channel, data }).await;
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.send(Event::WindowChange {
            channel,
            cols,
            rows,
        })
        .await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.forwards.contains(&channel) {
            return Ok(());
        }
        self.send(Event::Eof { channel }).await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.forwards.remove(&channel) {
            return Ok(());
        }
        self.send(Event::Close { channel }).await;
        Ok(())
    }

    /// `ssh -L`, `-W`, `-J`, `-D`: decided and carried by the link.
    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.forwards.insert(channel.id());
        let host = host_to_connect.to_string();
        self.link.open(channel, host, port_to_connect, reply);
        Ok(())
    }

    /// `ssh -R`: refused (and audited).
    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.link.refuse_remote(address, *port);
        self.notices.push(REMOTE_REFUSED);
        Ok(false)
    }

    /// `ssh -A`: refused, and said on the session channel.
    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let _ = session.extended_data(channel, 1, Bytes::from_static(AGENT_REFUSED.as_bytes()));
        Ok(false)
    }
}
