// ipchan Verilator harness: the engine as a separate process, reached over a Unix-domain socket.
//
// The host side (ipchan.sw.socket_transport) connects and speaks the link protocol of
// ipchan.hw.contract, the same frames a board's UART bridge speaks. This program drives the
// clock, the reset and the engine's AXI4-Lite subordinate port cycle by cycle in C++, so no Python
// runs per cycle: simulated time advances only while a request is being answered.
//
//   ipchan_sim SOCKET [--keep] [--trace FILE.fst] [--accept-timeout SECONDS] [--bus-timeout CYCLES]
//   ipchan_sim --bench-cycles N [--trace FILE.fst]
//
// The opcodes, status codes and the address width come from ipchan_contract.h, which
// ipchan.sim.verilator_build generates from hw/contract.py: no contract value is spelled here.
// Built with IPCHAN_ESP (a design with the ESP datapath's AXI4-Stream ports), it also answers
// PACKET requests: the packet goes into s_axis_in or s_axis_out (tuser = the SA's slot) beat by
// beat, the outputs are always ready, and the answer is the tag beat and the packet handed up.
// ipchan_design.h, generated from the design's Verilog, gives the width of s_axis_out_tuser.
//
// Exit codes: 0 after the client disconnects (or SIGTERM/SIGINT), 2 for bad arguments or a socket
// that cannot be set up, 3 when the design never answers a bus transaction or a packet, or breaks
// the stream rules (a gateware bug), 4 when no client connects within --accept-timeout, 5 when the
// client leaves in the middle of a request.

#include "ipchan_contract.h"
#if IPCHAN_ESP
#include "ipchan_design.h"
#endif
#include "Vipchan_engine.h"
#include "verilated.h"
#if IPCHAN_TRACE
#include "verilated_fst_c.h"
#endif

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

const char* const PROG = "ipchan-sim";

// A fatal error unwinds to main, so the trace file is closed and the socket removed on the way.
struct Fatal {
    int code;
    std::string message;
};

[[noreturn]] void fail(int code, const std::string& message) { throw Fatal{code, message}; }

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

// --- The simulated design: clock, reset, cycle counter, optional FST trace -----------------------

class Sim {
public:
    explicit Sim(const char* trace_path)
        : ctx_(new VerilatedContext), top_(nullptr) {
        // One clock cycle is 10 time units (ns): a 100 MHz clock in the waveform viewer.
        ctx_->timeunit(-9);
        ctx_->timeprecision(-9);
#if IPCHAN_TRACE
        if (trace_path) ctx_->traceEverOn(true);
#endif
        top_.reset(new Vipchan_engine{ctx_.get(), "ipchan_engine"});
#if IPCHAN_TRACE
        if (trace_path) {
            trace_.reset(new VerilatedFstC);
            top_->trace(trace_.get(), 99);
            trace_->open(trace_path);
            if (!trace_->isOpen()) fail(2, std::string("cannot open trace file ") + trace_path);
        }
#else
        if (trace_path)
            fail(2, "this simulation was built without tracing; build it with trace=True "
                    "(VerilatorTransport(trace=...) does so) to write " + std::string(trace_path));
#endif
        top_->clk = 0;
        top_->rst = 0;
        idle_bus();
        idle_streams();
        top_->eval();
        dump();
    }

    ~Sim() {
        top_->final();
#if IPCHAN_TRACE
        if (trace_) trace_->close();
#endif
    }

    Vipchan_engine* top() { return top_.get(); }
    uint64_t cycles() const { return cycles_; }

    // Settle the combinational logic after the manager changed its outputs (clock low).
    void settle() {
        top_->eval();
        dump();
    }

    // One rising and one falling clock edge.
    void tick() {
        ctx_->timeInc(5);
        top_->clk = 1;
        top_->eval();
        dump();
        ctx_->timeInc(5);
        top_->clk = 0;
        top_->eval();
        ++cycles_;
    }

    // Synchronous, active-high reset held for the contract's number of cycles, bus idle.
    void reset() {
        idle_bus();
        top_->rst = 1;
        settle();
        for (int i = 0; i < IPCHAN_LINK_RESET_CYCLES; ++i) tick();
        top_->rst = 0;
        settle();
    }

    // Stream inputs low: no packet offered, no output taken.
    void idle_streams() {
#if IPCHAN_ESP
        Vipchan_engine* t = top_.get();
        t->s_axis_in_tvalid = 0;
        t->s_axis_out_tvalid = 0;
        t->m_axis_in_data_tready = 0;
        t->m_axis_in_tag_tready = 0;
        t->m_axis_out_data_tready = 0;
        t->m_axis_out_tag_tready = 0;
#endif
    }

    void idle_bus() {
        Vipchan_engine* t = top_.get();
        t->s_axil_awvalid = 0;
        t->s_axil_wvalid = 0;
        t->s_axil_bready = 0;
        t->s_axil_arvalid = 0;
        t->s_axil_rready = 0;
        t->s_axil_awaddr = 0;
        t->s_axil_awprot = 0;
        t->s_axil_wdata = 0;
        t->s_axil_wstrb = 0;
        t->s_axil_araddr = 0;
        t->s_axil_arprot = 0;
    }

private:
    void dump() {
#if IPCHAN_TRACE
        if (trace_) trace_->dump(ctx_->time());
#endif
    }

    std::unique_ptr<VerilatedContext> ctx_;
    std::unique_ptr<Vipchan_engine> top_;
#if IPCHAN_TRACE
    std::unique_ptr<VerilatedFstC> trace_;
#endif
    uint64_t cycles_ = 0;
};

// --- AXI4-Lite manager: one access at a time, handshakes sampled before each rising edge ---------

class AxiLiteManager {
public:
    AxiLiteManager(Sim& sim, uint64_t timeout) : sim_(sim), timeout_(timeout) {}

    uint8_t write(uint32_t addr, uint32_t data) {
        // Nothing is decoded beyond the port's address width: answer as an interconnect would,
        // instead of letting the address wrap onto a real register.
        if (addr >> IPCHAN_AXIL_ADDR_WIDTH) return IPCHAN_LINK_DECERR;
        Vipchan_engine* t = sim_.top();
        t->s_axil_awaddr = addr;
        t->s_axil_awprot = 0;
        t->s_axil_awvalid = 1;
        t->s_axil_wdata = data;
        t->s_axil_wstrb = 0xF;
        t->s_axil_wvalid = 1;
        t->s_axil_bready = 1;
        const uint64_t start = sim_.cycles();
        for (;;) {
            sim_.settle();
            const bool aw = t->s_axil_awvalid && t->s_axil_awready;
            const bool w = t->s_axil_wvalid && t->s_axil_wready;
            const bool b = t->s_axil_bvalid && t->s_axil_bready;
            const uint8_t resp = t->s_axil_bresp;
            sim_.tick();
            if (aw) t->s_axil_awvalid = 0;
            if (w) t->s_axil_wvalid = 0;
            if (b) {
                t->s_axil_bready = 0;
                sim_.settle();
                return resp;
            }
            check_timeout(start, "write", addr);
        }
    }

    uint8_t read(uint32_t addr, uint32_t* data) {
        *data = 0;
        if (addr >> IPCHAN_AXIL_ADDR_WIDTH) return IPCHAN_LINK_DECERR;
        Vipchan_engine* t = sim_.top();
        t->s_axil_araddr = addr;
        t->s_axil_arprot = 0;
        t->s_axil_arvalid = 1;
        t->s_axil_rready = 1;
        const uint64_t start = sim_.cycles();
        for (;;) {
            sim_.settle();
            const bool ar = t->s_axil_arvalid && t->s_axil_arready;
            const bool r = t->s_axil_rvalid && t->s_axil_rready;
            const uint32_t rdata = t->s_axil_rdata;
            const uint8_t resp = t->s_axil_rresp;
            sim_.tick();
            if (ar) t->s_axil_arvalid = 0;
            if (r) {
                t->s_axil_rready = 0;
                sim_.settle();
                *data = rdata;
                return resp;
            }
            check_timeout(start, "read", addr);
        }
    }

private:
    void check_timeout(uint64_t start, const char* what, uint32_t addr) {
        if (sim_.cycles() - start < timeout_) return;
        char msg[160];
        std::snprintf(msg, sizeof msg,
                      "AXI4-Lite %s at 0x%03x got no response in %llu cycles (at cycle %llu)", what,
                      addr, (unsigned long long)timeout_, (unsigned long long)sim_.cycles());
        fail(3, msg);
    }

    Sim& sim_;
    uint64_t timeout_;
};


// --- ESP datapath: one packet in, its tag beat and the packet handed up out ----------------------

#if IPCHAN_ESP
// The signals of one direction: a packet stream in, a data stream and a tag stream out. The tag
// beat is IPCHAN_TAG_BITS of tag, then handed_up; tuser is the tag.
struct Streams {
    VlWide<4>* in_data;
    SData* in_keep;
    CData* in_last;
    CData* in_valid;
    CData* in_ready;
    VlWide<4>* out_data;
    SData* out_keep;
    CData* out_last;
    VlWide<6>* out_user;
    CData* out_valid;
    CData* out_ready;
    VlWide<6>* tag_data;
    CData* tag_valid;
    CData* tag_ready;
};

static_assert(IPCHAN_TAG_BEAT_BYTES <= 24, "the tag beat must fit VlWide<6>");

// Byte k (little-endian lanes) of a Verilator wide value.
template <std::size_t N>
uint8_t wide_byte(const VlWide<N>& w, int k) {
    return uint8_t(w[k / 4] >> (8 * (k % 4)));
}

class PacketPort {
public:
    PacketPort(Sim& sim, uint64_t timeout) : sim_(sim), timeout_(timeout) {
        Vipchan_engine* t = sim.top();
        in_ = {&t->s_axis_in_tdata, &t->s_axis_in_tkeep, &t->s_axis_in_tlast,
               &t->s_axis_in_tvalid, &t->s_axis_in_tready,
               &t->m_axis_in_data_tdata, &t->m_axis_in_data_tkeep, &t->m_axis_in_data_tlast,
               &t->m_axis_in_data_tuser, &t->m_axis_in_data_tvalid, &t->m_axis_in_data_tready,
               &t->m_axis_in_tag_tdata, &t->m_axis_in_tag_tvalid, &t->m_axis_in_tag_tready};
        out_ = {&t->s_axis_out_tdata, &t->s_axis_out_tkeep, &t->s_axis_out_tlast,
                &t->s_axis_out_tvalid, &t->s_axis_out_tready,
                &t->m_axis_out_data_tdata, &t->m_axis_out_data_tkeep, &t->m_axis_out_data_tlast,
                &t->m_axis_out_data_tuser, &t->m_axis_out_data_tvalid, &t->m_axis_out_data_tready,
                &t->m_axis_out_tag_tdata, &t->m_axis_out_tag_tvalid, &t->m_axis_out_tag_tready};
    }

    // Run one packet; append the answer (status, and for OKAY the tag beat, length, bytes).
    void run(uint8_t direction, uint32_t sa_index, const uint8_t* data, size_t len,
             std::string& out) {
        const bool outbound = direction == IPCHAN_DIRECTION_OUTBOUND;
        if ((direction != IPCHAN_DIRECTION_INBOUND && !outbound) || (!outbound && sa_index != 0) ||
            (sa_index >> IPCHAN_SA_INDEX_BITS) != 0) {
            out.push_back(char(IPCHAN_LINK_SLVERR));  // refused: nothing reaches the datapath
            return;
        }
        Vipchan_engine* t = sim_.top();
        const Streams& s = outbound ? out_ : in_;
        if (outbound) t->s_axis_out_tuser = sa_index;
        const size_t beats = len ? (len + 15) / 16 : 1;  // an empty packet is one empty beat
        size_t sent = 0;
        std::string handed;
        bool packet_done = false, have_user = false;
        uint8_t user[IPCHAN_TAG_BEAT_BYTES] = {0};
        uint8_t beat[IPCHAN_TAG_BEAT_BYTES] = {0};
        *s.out_ready = 1;
        *s.tag_ready = 1;
        const uint64_t start = sim_.cycles();
        for (;;) {
            if (sent < beats) {
                const size_t off = 16 * sent;
                const size_t n = len - off < 16 ? len - off : 16;
                for (int w = 0; w < 4; ++w) {
                    uint32_t word = 0;
                    for (int b = 0; b < 4; ++b) {
                        const size_t k = 4 * w + b;
                        if (k < n) word |= uint32_t(data[off + k]) << (8 * b);
                    }
                    (*s.in_data)[w] = word;
                }
                *s.in_keep = SData((1u << n) - 1);
                *s.in_last = sent + 1 == beats;
                *s.in_valid = 1;
            } else {
                *s.in_valid = 0;
            }
            sim_.settle();
            const bool in_hs = *s.in_valid && *s.in_ready;
            const bool data_hs = *s.out_valid && *s.out_ready;
            const bool tag_hs = *s.tag_valid && *s.tag_ready;
            if (data_hs) take_data(s, handed, user, have_user, packet_done);
            if (tag_hs)
                for (int k = 0; k < IPCHAN_TAG_BEAT_BYTES; ++k) beat[k] = wide_byte(*s.tag_data, k);
            sim_.tick();
            if (in_hs) ++sent;
            if (tag_hs) break;
            if (sim_.cycles() - start >= timeout_) {
                char msg[200];
                std::snprintf(msg, sizeof msg,
                              "the ESP datapath (%s) gave no tag for a %zu-byte packet in %llu "
                              "cycles (%zu of %zu beats taken, at cycle %llu)",
                              outbound ? "outbound" : "inbound", len,
                              (unsigned long long)timeout_, sent, beats,
                              (unsigned long long)sim_.cycles());
                fail(3, msg);
            }
        }
        *s.in_valid = 0;
        *s.out_ready = 0;
        *s.tag_ready = 0;
        sim_.settle();
        const int hb = IPCHAN_TAG_BITS / 8, hbit = IPCHAN_TAG_BITS % 8;
        const bool handed_up = (beat[hb] >> hbit) & 1;
        if (sent != beats) fail(3, "the ESP datapath gave a tag before it took the whole packet");
        if (handed_up != packet_done || (!handed_up && !handed.empty()))
            fail(3, handed_up ? "the tag says handed up, but no whole packet came out"
                              : "a packet came out whose tag says it was not handed up");
        if (handed_up) {
            // tuser is the tag: the tag beat without handed_up and above.
            uint8_t tag[IPCHAN_TAG_BEAT_BYTES];
            std::memcpy(tag, beat, sizeof tag);
            tag[hb] &= uint8_t((1u << hbit) - 1);
            for (int k = hb + 1; k < IPCHAN_TAG_BEAT_BYTES; ++k) tag[k] = 0;
            if (std::memcmp(tag, user, sizeof tag) != 0)
                fail(3, "the tuser of a packet handed up differs from its tag");
        }
        out.push_back(char(IPCHAN_LINK_OKAY));
        for (int k = IPCHAN_TAG_BEAT_BYTES - 1; k >= 0; --k) out.push_back(char(beat[k]));
        if (handed.size() > 0xFFFF) fail(3, "the ESP datapath handed up more than 65535 bytes");
        put16(out, handed.size());
        out += handed;
    }

private:
    static void put16(std::string& out, size_t v) {
        out.push_back(char((v >> 8) & 0xFF));
        out.push_back(char(v & 0xFF));
    }

    void take_data(const Streams& s, std::string& handed, uint8_t* user, bool& have_user,
                   bool& packet_done) {
        if (packet_done) fail(3, "the ESP datapath handed up a second packet for one input");
        const unsigned keep = *s.out_keep;
        unsigned n = 0;
        while (n < 16 && ((keep >> n) & 1)) ++n;
        if (keep != ((1u << n) - 1) || (!*s.out_last && n != 16))
            fail(3, "the ESP datapath handed up a beat whose tkeep is not all ones (or, on the "
                    "last beat, a run of ones from byte 0)");
        for (unsigned k = 0; k < n; ++k) handed.push_back(char(wide_byte(*s.out_data, int(k))));
        uint8_t u[IPCHAN_TAG_BEAT_BYTES] = {0};
        for (int k = 0; k < (IPCHAN_TAG_BITS + 7) / 8; ++k) u[k] = wide_byte(*s.out_user, k);
        if (have_user && std::memcmp(u, user, sizeof u) != 0)
            fail(3, "the tuser changed within a packet handed up");
        std::memcpy(user, u, sizeof u);
        have_user = true;
        if (*s.out_last) packet_done = true;
    }

    Sim& sim_;
    uint64_t timeout_;
    Streams in_, out_;
};
#endif

// --- Link protocol server ------------------------------------------------------------------------

uint32_t get_be(const uint8_t* p, int n) {
    uint32_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
    return v;
}

void put_be(std::string& out, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out.push_back(char((v >> (8 * i)) & 0xFF));
}

// Length of the request at `p` (of which `have` bytes are here; at least 1), or 1 for an unknown
// opcode: it is answered with the "unknown request" status and the next byte is read as a new
// request. A PACKET's length is in its header: until the header is here, the header's length.
// (A build without the datapath still reads a whole PACKET, so its bytes are never taken for
// requests, and answers it UNKNOWN.)
size_t request_length(const uint8_t* p, size_t have) {
    switch (p[0]) {
        case IPCHAN_LINK_OP_WRITE: return 7;
        case IPCHAN_LINK_OP_READ: return 3;
        case IPCHAN_LINK_OP_RESET: return 1;
        case IPCHAN_LINK_OP_CYCLES: return 1;
        case IPCHAN_LINK_OP_PACKET:
            if (have < IPCHAN_LINK_PACKET_HEADER) return IPCHAN_LINK_PACKET_HEADER;
            return IPCHAN_LINK_PACKET_HEADER + get_be(p + 4, 2);
        default: return 1;
    }
}

class LinkServer {
public:
    LinkServer(Sim& sim, AxiLiteManager& bus, uint64_t timeout)
        : sim_(sim), bus_(bus)
#if IPCHAN_ESP
        , packets_(sim, timeout)
#endif
    {
        (void)timeout;
    }

    // Answer one complete request; the response is appended to `out`.
    void handle(const uint8_t* req, std::string& out) {
        switch (req[0]) {
            case IPCHAN_LINK_OP_WRITE: {
                out.push_back(char(bus_.write(get_be(req + 1, 2), get_be(req + 3, 4))));
                break;
            }
            case IPCHAN_LINK_OP_READ: {
                uint32_t data;
                out.push_back(char(bus_.read(get_be(req + 1, 2), &data)));
                put_be(out, data, 4);
                break;
            }
            case IPCHAN_LINK_OP_RESET:
                sim_.reset();
                out.push_back(char(IPCHAN_LINK_OKAY));
                break;
            case IPCHAN_LINK_OP_CYCLES:
                out.push_back(char(IPCHAN_LINK_OKAY));
                put_be(out, sim_.cycles(), 8);
                break;
#if IPCHAN_ESP
            case IPCHAN_LINK_OP_PACKET:
                packets_.run(req[1], get_be(req + 2, 2), req + IPCHAN_LINK_PACKET_HEADER,
                             get_be(req + 4, 2), out);
                break;
#endif
            default:
                out.push_back(char(IPCHAN_LINK_UNKNOWN));
                break;
        }
    }

    // Serve one connection until the client closes it or a signal asks us to stop. Requests may
    // arrive pipelined; answers are sent when the input runs dry, so a batch costs one send.
    void serve(int fd, const sigset_t* waitmask) {
        // Room for the longest request (a PACKET of 65535 bytes) and more.
        std::vector<uint8_t> in(1 << 17);
        size_t have = 0;
        std::string out;
        for (;;) {
            size_t pos = 0;
            while (pos < have) {
                const size_t need = request_length(&in[pos], have - pos);
                if (have - pos < need) break;
                handle(&in[pos], out);
                pos += need;
                if (out.size() >= (1 << 15) && !send_all(fd, out, waitmask)) return;
            }
            std::memmove(in.data(), in.data() + pos, have - pos);
            have -= pos;
            if (!out.empty() && !send_all(fd, out, waitmask)) return;
            if (!wait_fd(fd, POLLIN, waitmask)) return;
            const ssize_t n = recv(fd, in.data() + have, in.size() - have, 0);
            if (n == 0) {  // the client closed the connection
                if (have) {
                    char msg[160];
                    std::snprintf(msg, sizeof msg,
                                  "the client left in the middle of a request: %zu of its %zu "
                                  "bytes came (opcode 0x%02X)",
                                  have, request_length(in.data(), have), in[0]);
                    fail(5, msg);
                }
                return;
            }
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                if (errno == ECONNRESET) return;
                fail(2, std::string("recv: ") + std::strerror(errno));
            }
            have += size_t(n);
        }
    }

    // Wait until fd is ready, with the stop signals unblocked only while waiting: a SIGTERM can
    // never slip in between the check of g_stop and the wait.
    static bool wait_fd(int fd, short events, const sigset_t* waitmask) {
        for (;;) {
            if (g_stop) return false;
            struct pollfd p = {fd, events, 0};
            const int r = ppoll(&p, 1, nullptr, waitmask);
            if (r < 0) {
                if (errno == EINTR) continue;
                fail(2, std::string("ppoll: ") + std::strerror(errno));
            }
            return true;
        }
    }

private:
    static bool send_all(int fd, std::string& out, const sigset_t* waitmask) {
        size_t done = 0;
        while (done < out.size()) {
            const ssize_t n = send(fd, out.data() + done, out.size() - done, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) {
                    if (!wait_fd(fd, POLLOUT, waitmask)) return false;
                    continue;
                }
                if (errno == EPIPE || errno == ECONNRESET) return false;  // client gone
                fail(2, std::string("send: ") + std::strerror(errno));
            }
            done += size_t(n);
        }
        out.clear();
        return true;
    }

    Sim& sim_;
    AxiLiteManager& bus_;
#if IPCHAN_ESP
    PacketPort packets_;
#endif
};

// --- Socket set-up -------------------------------------------------------------------------------

int listen_on(const std::string& path) {
    struct sockaddr_un addr;
    std::memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path)
        fail(2, "socket path is " + std::to_string(path.size()) + " bytes, longer than the " +
                    std::to_string(sizeof addr.sun_path - 1) + " a Unix socket allows: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail(2, std::string("socket: ") + std::strerror(errno));
    struct stat st;
    if (lstat(path.c_str(), &st) == 0) {
        // Replace a socket left behind by a simulation that died, never a live one or a file.
        if (!S_ISSOCK(st.st_mode)) fail(2, path + " exists and is not a socket");
        const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const bool live = connect(probe, (struct sockaddr*)&addr, sizeof addr) == 0;
        close(probe);
        if (live) fail(2, "another simulation is already listening on " + path);
        unlink(path.c_str());
    }
    if (bind(fd, (struct sockaddr*)&addr, sizeof addr) < 0)
        fail(2, "bind " + path + ": " + std::strerror(errno));
    if (listen(fd, 1) < 0) fail(2, std::string("listen: ") + std::strerror(errno));
    return fd;
}

// Accept one connection; -1 when a stop signal arrived. Fails (exit code 4) when no client came
// within `timeout` seconds (0: wait for ever), so an orphaned simulation does not linger.
int accept_one(int lfd, double timeout, const sigset_t* waitmask) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
    for (;;) {
        if (g_stop) return -1;
        struct pollfd p = {lfd, POLLIN, 0};
        struct timespec ts, *tsp = nullptr;
        if (timeout > 0) {
            const double left =
                std::chrono::duration<double>(deadline - std::chrono::steady_clock::now()).count();
            if (left <= 0) {
                char msg[80];
                std::snprintf(msg, sizeof msg, "no client connected within %g s", timeout);
                fail(4, msg);
            }
            ts.tv_sec = time_t(left);
            ts.tv_nsec = long((left - double(ts.tv_sec)) * 1e9);
            tsp = &ts;
        }
        const int r = ppoll(&p, 1, tsp, waitmask);
        if (r < 0 && errno != EINTR) fail(2, std::string("ppoll: ") + std::strerror(errno));
        if (r <= 0) continue;
        const int cfd = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (cfd >= 0) return cfd;
        if (errno != EINTR && errno != ECONNABORTED)
            fail(2, std::string("accept: ") + std::strerror(errno));
    }
}

void usage() {
    std::fprintf(stderr,
                 "usage: ipchan_sim SOCKET [--keep] [--trace FILE.fst] [--accept-timeout SECONDS]"
                 " [--bus-timeout CYCLES]\n"
                 "       ipchan_sim --bench-cycles N [--trace FILE.fst]\n");
}

// Removes the socket file when the server stops, however it stops.
struct SocketFile {
    std::string path;
    int fd = -1;
    ~SocketFile() {
        if (fd >= 0) {
            close(fd);
            unlink(path.c_str());
        }
    }
};

int run(int argc, char** argv) {
    std::string socket_path;
    const char* trace_path = nullptr;
    bool keep = false;
    double accept_timeout = 0;
    uint64_t bus_timeout = 1000000;
    uint64_t bench_cycles = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) {
                usage();
                fail(2, "option " + a + " needs a value");
            }
            return argv[++i];
        };
        auto number = [&](const char* v) -> double {
            char* end;
            const double d = std::strtod(v, &end);
            if (*v == '\0' || *end != '\0' || d < 0)
                fail(2, "option " + a + " needs a non-negative number, not " + v);
            return d;
        };
        if (a == "--trace") trace_path = value();
        else if (a == "--keep") keep = true;
        else if (a == "--accept-timeout") accept_timeout = number(value());
        else if (a == "--bus-timeout") bus_timeout = uint64_t(number(value()));
        else if (a == "--bench-cycles") bench_cycles = uint64_t(number(value()));
        else if (a == "-h" || a == "--help") { usage(); return 0; }
        else if (!a.empty() && a[0] == '-') { usage(); fail(2, "unknown option " + a); }
        else if (socket_path.empty()) socket_path = a;
        else { usage(); fail(2, "unexpected argument " + a); }
    }
    if (socket_path.empty() && !bench_cycles) {
        usage();
        fail(2, "no socket path given");
    }
    if (bus_timeout == 0) fail(2, "option --bus-timeout must be at least 1 cycle");

    // SIGTERM and SIGINT are blocked except inside ppoll (see wait_fd), where they end the wait.
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);

    Sim sim(trace_path);
    sim.reset();

    if (bench_cycles) {
        // The raw speed of the model and this loop, with the bus idle.
        const auto t0 = std::chrono::steady_clock::now();
        for (uint64_t i = 0; i < bench_cycles; ++i) sim.tick();
        const auto elapsed = std::chrono::steady_clock::now() - t0;
        const double s = std::chrono::duration<double>(elapsed).count();
        std::printf("cycles %llu seconds %.6f cycles_per_second %.0f\n",
                    (unsigned long long)bench_cycles, s, double(bench_cycles) / s);
        return 0;
    }

    AxiLiteManager bus(sim, bus_timeout);
    LinkServer server(sim, bus, bus_timeout);
    SocketFile sock{socket_path};
    sock.fd = listen_on(socket_path);
    std::printf("%s: listening on %s\n", PROG, socket_path.c_str());
    std::fflush(stdout);
    double timeout = accept_timeout;
    for (;;) {
        const int cfd = accept_one(sock.fd, timeout, &waitmask);
        if (cfd < 0) break;
        try {
            server.serve(cfd, &waitmask);
        } catch (...) {
            close(cfd);
            throw;
        }
        close(cfd);
        if (!keep || g_stop) break;
        timeout = 0;  // a kept server waits for its next client as long as it takes
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const Fatal& f) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s: %s\n", PROG, f.message.c_str());
        return f.code;
    }
}
