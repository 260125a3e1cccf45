//! The batch helpers on real loopback UDP sockets (127.0.0.1 only).

use super::*;

async fn pair() -> (UdpSocket, UdpSocket) {
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    (a, b)
}

fn datagram(i: usize) -> Vec<u8> {
    let len = 1 + (i * 37) % 600;
    (0..len).map(|j| (i + j) as u8).collect()
}

#[tokio::test]
async fn one_call_reads_a_whole_batch_in_order_then_the_rest() {
    let (a, b) = pair().await;
    let to = b.local_addr().unwrap();
    for i in 0..BATCH + 36 {
        a.send_to(&datagram(i), to).await.unwrap();
    }
    b.readable().await.unwrap();
    let mut batch = RecvBatch::new();
    let mut got = Vec::new();
    let n = batch
        .recv(&b, |from, bytes| got.push((from, bytes.to_vec())))
        .unwrap();
    assert_eq!(n, BATCH, "one recvmmsg fills the batch");
    let n = batch
        .recv(&b, |from, bytes| got.push((from, bytes.to_vec())))
        .unwrap();
    assert_eq!(n, 36);
    let e = batch.recv(&b, |_, _| panic!("nothing left")).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    let from = a.local_addr().unwrap();
    for (i, (f, bytes)) in got.iter().enumerate() {
        assert_eq!(*f, from);
        assert_eq!(*bytes, datagram(i), "datagram {i}");
    }
}

#[tokio::test]
async fn a_datagram_longer_than_a_slot_is_dropped_and_counted() {
    let (a, b) = pair().await;
    let to = b.local_addr().unwrap();
    a.send_to(&vec![7u8; SLOT + 1], to).await.unwrap();
    a.send_to(b"after", to).await.unwrap();
    b.readable().await.unwrap();
    let mut batch = RecvBatch::new();
    let mut got = Vec::new();
    let n = batch.recv(&b, |_, bytes| got.push(bytes.to_vec())).unwrap();
    assert_eq!(n, 2);
    assert_eq!(got, vec![b"after".to_vec()]);
    assert_eq!(batch.truncated, 1);
}

#[tokio::test]
async fn a_send_batch_goes_out_whole_and_in_order_and_is_reused() {
    let (a, b) = pair().await;
    // Room for a whole round in the receiver's queue (it reads only after the sends).
    size_buffers(SockRef::from(&b)).unwrap();
    let to = b.local_addr().unwrap();
    let mut out = SendBatch::new();
    for round in 0..2 {
        // More than one sendmmsg's worth.
        for i in 0..BATCH + 36 {
            out.push(to, &datagram(i + round));
        }
        loop {
            match out.send(&a, |dst, e| panic!("{dst}: {e}")) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => a.writable().await.unwrap(),
                Err(e) => panic!("{e}"),
            }
        }
        assert!(out.is_empty());
        let mut buf = vec![0u8; 2048];
        for i in 0..BATCH + 36 {
            let (n, from) = b.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, a.local_addr().unwrap());
            assert_eq!(
                buf[..n],
                datagram(i + round)[..],
                "round {round} datagram {i}"
            );
        }
    }
}

#[tokio::test]
async fn a_refused_destination_is_dropped_and_the_rest_still_go() {
    let (a, b) = pair().await;
    let to = b.local_addr().unwrap();
    let mut out = SendBatch::new();
    out.push(to, b"one");
    // Port 0 is not a destination: the kernel refuses this datagram alone.
    out.push(SocketAddr::from(([127, 0, 0, 1], 0)), b"nowhere");
    out.push(to, b"two");
    a.writable().await.unwrap();
    let mut refused = Vec::new();
    out.send(&a, |dst, _| refused.push(dst)).unwrap();
    assert_eq!(refused, vec![SocketAddr::from(([127, 0, 0, 1], 0))]);
    let mut buf = [0u8; 16];
    let (n, _) = b.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"one");
    let (n, _) = b.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"two");
}

#[tokio::test]
async fn socket_buffers_grow_with_or_without_cap_net_admin() {
    let (a, _b) = pair().await;
    let before = SockRef::from(&a).recv_buffer_size().unwrap();
    let sizes = size_buffers(SockRef::from(&a)).unwrap();
    assert!(sizes.recv > before, "{before} -> {sizes:?}");
    assert!(sizes.send > 0);
}

#[test]
fn the_drop_total_counts_on_across_the_kernels_32_bit_wrap() {
    let mut d = DropCount::default();
    assert_eq!(d.observe(0), 0);
    assert_eq!(d.observe(10), 10);
    assert_eq!(d.observe(u32::MAX - 4), 10 + u64::from(u32::MAX - 14));
    assert_eq!(d.observe(5), 10 + u64::from(u32::MAX - 14) + 10);
}
