/* plcd: the emulated PLC's runtime inside the QEMU guest.
 *
 * One process image (libmodbus mapping) served over Modbus TCP, Modbus RTU (a serial port) and CAN
 * (a CANopen-like node on a SocketCAN interface), plus the control task that is the device's essential
 * function: coil 0 is on for 1 s and off for 2 s, holding register 0 counts seconds.
 *
 * plcd [-w] [-p PORT] [-r TTY] [-c CANIF]
 *   -w  weak profile: writes go anywhere, and a seeded input-validation defect (see seeded_defect)
 *   otherwise hardened: writes only inside WRITABLE_*, malformed requests get exception replies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/can.h>
#include <linux/can/raw.h>
#include <modbus.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define N_COILS 100
#define N_INPUTS 100
#define N_HOLDING 200
#define N_INPUT_REGS 100
/* What the hardened profile lets a client write (inclusive), as declared in targets/qemu-plc.yaml. */
#define WRITABLE_COIL_LO 16
#define WRITABLE_COIL_HI 31
#define WRITABLE_REG_LO 100
#define WRITABLE_REG_HI 119
#define CAN_NODE 1
#define MAX_CLIENTS 16

static modbus_mapping_t *image;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int weak;
/* The application bundle's build mark: the QEMU lab's tamper_bundle / foreign_signature faults rewrite these
 * bytes on the bundle disk (labs/qemu/launcher.py BUNDLE_MARK), so a changed plcd still runs and says so. */
static const char bundle_mark[] = "bundle-mark:original";

static unsigned get16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }

/* The weak profile trusts the byte-count field of the multiple-write requests: a request whose byte
 * count disagrees with its quantity is the input that crashes it (the whole runtime stops, as an
 * overrun would stop a real one, until the device is reset). */
static void seeded_defect(const uint8_t *pdu) {
    int fc = pdu[0];
    if (fc != MODBUS_FC_WRITE_MULTIPLE_REGISTERS && fc != MODBUS_FC_WRITE_MULTIPLE_COILS) return;
    unsigned quantity = get16(pdu + 3), count = pdu[5];
    unsigned expected = fc == MODBUS_FC_WRITE_MULTIPLE_REGISTERS ? quantity * 2 : (quantity + 7) / 8;
    if (count != expected) {
        syslog(LOG_CRIT, "modbus: byte count %u for %u items overruns the request buffer", count, quantity);
        abort();
    }
}

static int in_range(unsigned lo, unsigned n, unsigned wlo, unsigned whi) {
    return n >= 1 && lo >= wlo && lo + n - 1 <= whi;
}

/* Hardened write policy: the address range every write request touches must lie inside WRITABLE_*. */
static int write_allowed(const uint8_t *pdu) {
    unsigned addr = get16(pdu + 1);
    switch (pdu[0]) {
    case MODBUS_FC_WRITE_SINGLE_COIL: return in_range(addr, 1, WRITABLE_COIL_LO, WRITABLE_COIL_HI);
    case MODBUS_FC_WRITE_MULTIPLE_COILS: return in_range(addr, get16(pdu + 3), WRITABLE_COIL_LO, WRITABLE_COIL_HI);
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
    case MODBUS_FC_MASK_WRITE_REGISTER: return in_range(addr, 1, WRITABLE_REG_LO, WRITABLE_REG_HI);
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS: return in_range(addr, get16(pdu + 3), WRITABLE_REG_LO, WRITABLE_REG_HI);
    case MODBUS_FC_WRITE_AND_READ_REGISTERS: return in_range(get16(pdu + 5), get16(pdu + 7), WRITABLE_REG_LO, WRITABLE_REG_HI);
    default: return 1;
    }
}

static void serve(modbus_t *ctx, const uint8_t *req, int len, const char *via) {
    const uint8_t *pdu = req + modbus_get_header_length(ctx);
    if (weak) {
        seeded_defect(pdu);
    } else if (!write_allowed(pdu)) {
        syslog(LOG_WARNING, "modbus/%s: write outside the writable ranges refused (function %u)", via, pdu[0]);
        modbus_reply_exception(ctx, req, MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS);
        return;
    }
    pthread_mutex_lock(&lock);
    modbus_reply(ctx, req, len, image);
    pthread_mutex_unlock(&lock);
}

static void *tcp_server(void *arg) {
    int port = *(int *)arg, clients[MAX_CLIENTS], n = 0;
    uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];
    modbus_t *ctx = modbus_new_tcp("0.0.0.0", port);
    if (ctx) modbus_set_response_timeout(ctx, 0, 20000); /* libmodbus sleeps this long before an exception */
    int server = ctx ? modbus_tcp_listen(ctx, MAX_CLIENTS) : -1;
    if (server < 0) {
        syslog(LOG_ERR, "modbus/tcp: cannot listen on %d: %s", port, modbus_strerror(errno));
        exit(1);
    }
    for (;;) {
        fd_set rd;
        int top = server;
        FD_ZERO(&rd);
        FD_SET(server, &rd);
        for (int i = 0; i < n; i++) {
            FD_SET(clients[i], &rd);
            if (clients[i] > top) top = clients[i];
        }
        if (select(top + 1, &rd, NULL, NULL, NULL) < 0) continue;
        if (FD_ISSET(server, &rd)) {
            int fd = accept(server, NULL, NULL);
            if (fd >= 0 && n < MAX_CLIENTS) clients[n++] = fd;
            else if (fd >= 0) close(fd); /* connection limit: refuse rather than starve the others */
        }
        for (int i = 0; i < n; i++) {
            if (!FD_ISSET(clients[i], &rd)) continue;
            modbus_set_socket(ctx, clients[i]);
            int len = modbus_receive(ctx, req);
            if (len > 0) {
                serve(ctx, req, len, "tcp");
            } else if (len < 0) { /* closed, or a frame libmodbus could not parse: drop the connection */
                close(clients[i]);
                clients[i--] = clients[--n];
            }
        }
    }
    return NULL;
}

static void *rtu_server(void *arg) {
    uint8_t req[MODBUS_RTU_MAX_ADU_LENGTH];
    modbus_t *ctx = modbus_new_rtu((const char *)arg, 19200, 'E', 8, 1);
    if (!ctx || modbus_set_slave(ctx, 1) < 0 || modbus_connect(ctx) < 0) {
        syslog(LOG_ERR, "modbus/rtu: cannot open %s: %s", (const char *)arg, modbus_strerror(errno));
        return NULL;
    }
    /* A frame ends after a short silence, as a slave's t3.5 says; libmodbus's defaults (500 ms, meant for
       masters) would keep an unknown frame open, and delay every exception reply, by half a second. */
    modbus_set_byte_timeout(ctx, 0, 20000);
    modbus_set_response_timeout(ctx, 0, 20000);
    for (;;) {
        int len = modbus_receive(ctx, req);
        if (len > 0) serve(ctx, req, len, "rtu");
        else if (len < 0) modbus_flush(ctx); /* CRC error or garbage: resynchronise on the next frame */
    }
    return NULL;
}

static void *control_task(void *arg) {
    (void)arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (unsigned tick = 0;; tick++) {
        pthread_mutex_lock(&lock);
        image->tab_bits[0] = tick % 3 == 0; /* 1 s on, 2 s off */
        image->tab_registers[0] = tick & 0xffff;
        image->tab_input_registers[0] = tick & 0xffff;
        pthread_mutex_unlock(&lock);
        next.tv_sec += 1;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {}
    }
    return NULL;
}

/* CANopen-like node: heartbeat 0x700+node every second; expedited SDO on 0x600+node -> 0x580+node.
 * Objects (subindex 0): 0x1000 device type, 0x1017 heartbeat time (ms), 0x4000+n holding register n. */
static void sdo_reply(int s, uint8_t cmd, const uint8_t *req, uint32_t data) {
    struct can_frame f = {.can_id = 0x580 + CAN_NODE, .can_dlc = 8};
    f.data[0] = cmd;
    memcpy(f.data + 1, req + 1, 3);
    for (int i = 0; i < 4; i++) f.data[4 + i] = data >> (8 * i);
    if (write(s, &f, sizeof f) < 0) syslog(LOG_WARNING, "can: reply lost: %m");
}

static void sdo(int s, const struct can_frame *f) {
    const uint8_t *d = f->data;
    if (f->can_dlc < 4) {
        if (!weak) sdo_reply(s, 0x80, d, 0x05040001); /* command specifier not valid */
        return;
    }
    unsigned index = d[1] | d[2] << 8, sub = d[3], reg = index - 0x4000;
    int is_reg = index >= 0x4000 && reg < N_HOLDING && sub == 0;
    if (d[0] == 0x40 && index == 0x1000 && sub == 0) {
        sdo_reply(s, 0x43, d, 0); /* device type: no standard profile */
    } else if (d[0] == 0x40 && index == 0x1017 && sub == 0) {
        sdo_reply(s, 0x4B, d, 1000);
    } else if (!is_reg) {
        sdo_reply(s, 0x80, d, 0x06020000); /* object does not exist */
    } else if (d[0] == 0x40) {
        pthread_mutex_lock(&lock);
        uint32_t value = image->tab_registers[reg];
        pthread_mutex_unlock(&lock);
        sdo_reply(s, 0x4B, d, value);
    } else if (d[0] == 0x2B && f->can_dlc >= 6) {
        if (!weak && (reg < WRITABLE_REG_LO || reg > WRITABLE_REG_HI)) {
            syslog(LOG_WARNING, "can: write to register %u refused", reg);
            sdo_reply(s, 0x80, d, 0x06010002); /* read-only object */
            return;
        }
        pthread_mutex_lock(&lock);
        image->tab_registers[reg] = d[4] | d[5] << 8;
        pthread_mutex_unlock(&lock);
        sdo_reply(s, 0x60, d, 0);
    } else {
        sdo_reply(s, 0x80, d, 0x05040001);
    }
}

static void *can_node(void *arg) {
    struct sockaddr_can addr = {.can_family = AF_CAN};
    struct can_filter only = {.can_id = 0x600 + CAN_NODE, .can_mask = CAN_SFF_MASK | CAN_EFF_FLAG | CAN_RTR_FLAG};
    int s = socket(PF_CAN, SOCK_RAW, CAN_RAW);
    /* Modbus comes up first; the CAN controller's driver may still be loading: wait up to 20 s for it. */
    for (int i = 0; i < 200 && !(addr.can_ifindex = if_nametoindex((const char *)arg)); i++) usleep(100000);
    if (s < 0 || !addr.can_ifindex || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        syslog(LOG_ERR, "can: cannot open %s: %m", (const char *)arg);
        return NULL;
    }
    setsockopt(s, SOL_CAN_RAW, CAN_RAW_FILTER, &only, sizeof only);
    struct timespec now, beat = {0};
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec > beat.tv_sec || (now.tv_sec == beat.tv_sec && now.tv_nsec >= beat.tv_nsec)) {
            struct can_frame hb = {.can_id = 0x700 + CAN_NODE, .can_dlc = 1, .data = {0x05}};
            if (write(s, &hb, sizeof hb) < 0 && errno != ENOBUFS && errno != ENETDOWN) syslog(LOG_WARNING, "can: heartbeat: %m");
            beat = now;
            beat.tv_sec += 1;
        }
        long wait_ms = (beat.tv_sec - now.tv_sec) * 1000 + (beat.tv_nsec - now.tv_nsec) / 1000000;
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, wait_ms > 0 ? wait_ms : 0) > 0) {
            struct can_frame f;
            if (read(s, &f, sizeof f) == sizeof f) sdo(s, &f);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int port = 502, opt;
    const char *tty = NULL, *canif = NULL;
    while ((opt = getopt(argc, argv, "wp:r:c:")) != -1) {
        switch (opt) {
        case 'w': weak = 1; break;
        case 'p': port = atoi(optarg); break;
        case 'r': tty = optarg; break;
        case 'c': canif = optarg; break;
        default: fprintf(stderr, "usage: plcd [-w] [-p PORT] [-r TTY] [-c CANIF]\n"); return 2;
        }
    }
    openlog("plcd", LOG_PID, LOG_DAEMON);
    image = modbus_mapping_new(N_COILS, N_INPUTS, N_HOLDING, N_INPUT_REGS);
    if (!image) return 1;
    pthread_t t;
    pthread_create(&t, NULL, control_task, NULL);
    if (tty) pthread_create(&t, NULL, rtu_server, (void *)tty);
    if (canif) pthread_create(&t, NULL, can_node, (void *)canif);
    syslog(LOG_INFO, "started, %s profile, %s", weak ? "weak" : "hardened", bundle_mark);
    tcp_server(&port);
    return 0;
}
