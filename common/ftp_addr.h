#ifndef FTPSGATE_FTP_ADDR_H
#define FTPSGATE_FTP_ADDR_H
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* Parsing and formatting of the address-carrying FTP texts:
 *   227 reply   "Entering Passive Mode (h1,h2,h3,h4,p1,p2)"  (RFC 959 §4.1.2)
 *   229 reply   "Entering Extended Passive Mode (|||port|)"  (RFC 2428 §3)
 *   PORT arg    "h1,h2,h3,h4,p1,p2"
 *   EPRT arg    "|1|132.235.1.2|6275|", "|2|::1|6275|" (any printable delimiter)
 * All functions are pure. Numbers are strict decimal, each byte 0..255, port
 * 1..65535 (port 0 is FG_RANGE). */

/* text: reply text after "227 ". Finds the first '(' ... or the first digit
 * run of six comma-separated numbers, as clients do. */
int ftp_addr_parse_227(const char *text, size_t len, struct in_addr *ip, uint16_t *port);

/* text: reply text after "229 ". Finds "(<d><d><d>port<d>)". */
int ftp_addr_parse_229(const char *text, size_t len, uint16_t *port);

int ftp_addr_parse_port(const char *arg, size_t len, struct in_addr *ip, uint16_t *port);

/* Fills a sockaddr_in or sockaddr_in6 (port set) in *out. */
int ftp_addr_parse_eprt(const char *arg, size_t len, struct sockaddr_storage *out);

/* Formatters write a complete reply or command line with CRLF and a NUL,
 * return the length without the NUL, or FG_RANGE when cap is too small. */
int ftp_addr_format_227(char *out, size_t cap, struct in_addr ip, uint16_t port);
int ftp_addr_format_229(char *out, size_t cap, uint16_t port);
int ftp_addr_format_port(char *out, size_t cap, struct in_addr ip, uint16_t port);     /* "PORT ...\r\n" */
int ftp_addr_format_eprt(char *out, size_t cap, const struct sockaddr *addr);          /* "EPRT |n|ip|port|\r\n" */

#endif
