//! `ferrite-mirrord`: the per-node daemon of the MIRROR layer. (Being written: docs/mirror.md.)

fn main() {
    eprintln!("ferrite-mirrord: not implemented yet");
    std::process::exit(2);
}
