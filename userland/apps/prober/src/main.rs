//! `prober` (test only): checks that every capability check says no where it must, and
//! that a caller of a server that dies is woken with `EPIPE`. Its manifest grants only
//! `call = ["pong", "fragile"]`. A line containing `WRONG` means a check let it through.

#![no_std]
#![no_main]

use septa_syscalls::{self as sys, Error, Handle, HandleKind, Syscall};

septa_runtime::entry!(main);

fn expect(what: &str, got: Result<impl core::fmt::Debug, Error>, wanted: Error) -> u32 {
    match got {
        Err(error) if error == wanted => {
            sys::log!("refused: {what} -> {error}");
            1
        }
        other => {
            sys::log!("WRONG: {what} -> {other:?}, expected {wanted}");
            0
        }
    }
}

fn main() {
    let pong = sys::lookup(HandleKind::Call, "pong").expect("the manifest calls pong");
    let fragile = sys::lookup(HandleKind::Call, "fragile").expect("the manifest calls fragile");
    let mut reply = [0u8; 16];
    let mut refused = 0;
    refused +=
        expect("lookup(call, logger) not in call", sys::lookup(HandleKind::Call, "logger"), Error::Access);
    refused +=
        expect("lookup(serve, pong) not in serve", sys::lookup(HandleKind::Serve, "pong"), Error::Access);
    refused +=
        expect("lookup(device, rtc) not granted", sys::lookup(HandleKind::Device, "rtc"), Error::Access);
    refused += expect("lookup(gpio) not granted", sys::lookup(HandleKind::Gpio, "gpio"), Error::Access);
    refused +=
        expect("lookup(monitor) not granted", sys::lookup(HandleKind::Monitor, "monitor"), Error::Access);
    let mut random = [0u8; 4];
    let request = septa_abi::monitor::Request::Random { len: 4 };
    refused += expect(
        "monitor_call(call handle)",
        sys::monitor::call_with(pong, &request, &mut random),
        Error::Access,
    );
    // Handles the prober does not hold: its table has entries 0 and 1 only.
    let closed = Handle(5);
    let out_of_range = Handle(1000);
    refused += expect("call(closed handle)", sys::call(closed, b"x", &mut reply), Error::Access);
    refused += expect("call(out-of-range handle)", sys::call(out_of_range, b"x", &mut reply), Error::Access);
    refused += expect("recv(call handle) serving pong", sys::recv(pong, &mut reply), Error::Access);
    refused += expect("map_device(call handle)", sys::map_device(pong), Error::Access);
    refused += expect("map_device(closed handle)", sys::map_device(closed), Error::Access);
    refused += expect("irq_ack(call handle)", sys::irq_ack(pong), Error::Access);
    refused += expect("gpio_set(call handle)", sys::gpio_set(pong, 1 << 3, 1 << 3), Error::Access);
    refused += expect("notify(closed handle)", sys::notify(closed, 1), Error::Access);
    refused += expect("reply without a call", sys::reply(b"x"), Error::Invalid);
    refused += expect("dma_pool without dma-kib", sys::dma_pool().map(drop), Error::Access);
    let oversized = [0u8; sys::MESSAGE_MAX + 1];
    refused +=
        expect("call with an oversized message", sys::call(pong, &oversized, &mut reply), Error::Invalid);
    // Room for more than 16 bytes back: the kernel checks the (kernel-owned) reply buffer.
    let out = sys::raw_ipc(
        Syscall::Call as u32,
        pong.0,
        sys::lengths(4, 64),
        sys::message_words(b"abcd"),
        0x4010_0000,
    );
    let bad_reply_buffer = Error::result(out.status, out.value);
    refused += expect("call with a kernel reply buffer", bad_reply_buffer, Error::Fault);
    // The calls above changed nothing: pong still answers.
    match sys::call(pong, b"abc", &mut reply) {
        Ok(3) if &reply[..3] == b"cba" => sys::log!("pong still answers"),
        other => sys::log!("WRONG: pong after the refused calls -> {other:?}"),
    }
    sys::log!("{refused} of 18 capability checks refused");
    // crasher serves fragile and dies without answering: the call must come back EPIPE.
    match sys::call(fragile, b"hello?", &mut reply) {
        Err(Error::Pipe) => sys::log!("call to a dying server -> EPIPE"),
        other => sys::log!("WRONG: call to a dying server -> {other:?}"),
    }
}
