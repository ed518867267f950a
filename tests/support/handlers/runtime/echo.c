/* A static-binary custom runtime for the tests: loops on the Lambda Runtime API, answering each
 * event with {"static": <event>, "n": <count>}. One connection per request (Connection: close),
 * so a reply is read to end of stream. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char host[64];
static int port;

static int call(const char *method, const char *path, const char *body, char *out, size_t cap) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) exit(2);
    char head[512];
    size_t len = body ? strlen(body) : 0;
    int n = snprintf(head, sizeof head,
                     "%s /2018-06-01/runtime/%s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
                     "Content-Length: %zu\r\n\r\n", method, path, host, len);
    if (write(fd, head, n) != n || (len && write(fd, body, len) != (ssize_t)len)) exit(3);
    size_t got = 0;
    ssize_t r;
    while (got + 1 < cap && (r = read(fd, out + got, cap - 1 - got)) > 0) got += r;
    out[got] = 0;
    close(fd);
    return (int)got;
}

int main(void) {
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    if (!api || sscanf(api, "%63[^:]:%d", host, &port) != 2) return 1;
    static char reply[1 << 20], answer[(1 << 20) + 64], path[256];
    for (int count = 1;; count++) {
        call("GET", "invocation/next", NULL, reply, sizeof reply);
        char *id = strstr(reply, "Lambda-Runtime-Aws-Request-Id: ");
        char *body = strstr(reply, "\r\n\r\n");
        if (!id || !body) return 4;
        id += strlen("Lambda-Runtime-Aws-Request-Id: ");
        size_t id_len = strcspn(id, "\r\n");
        snprintf(path, sizeof path, "invocation/%.*s/response", (int)id_len, id);
        snprintf(answer, sizeof answer, "{\"static\": %s, \"n\": %d}", body + 4, count);
        call("POST", path, answer, reply, sizeof reply);
    }
}
