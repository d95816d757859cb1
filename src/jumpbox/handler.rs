//! The russh `Handler`: a thin adapter. Each callback becomes an [`Event`]
//! on a bounded channel to the connection's actor; where russh needs an
//! answer (authentication, opening a channel) the actor replies through a
//! oneshot. Channel requests are acknowledged here; the actor decides what
//! happens and says it on the channel.

use std::net::SocketAddr;

use bytes::Bytes;
use russh::keys::PublicKey;
use russh::server::{
    Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId};
use tokio::sync::{mpsc, oneshot};

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
}

impl Adapter {
    pub fn new(tx: mpsc::Sender<Event>, peer: Option<SocketAddr>) -> Self {
        Self { tx, peer }
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
        self.send(Event::Eof { channel }).await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.send(Event::Close { channel }).await;
        Ok(())
    }
}
