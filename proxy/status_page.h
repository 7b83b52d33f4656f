#ifndef FTPSGATE_STATUS_PAGE_H
#define FTPSGATE_STATUS_PAGE_H
#include <stddef.h>

/* GET /status: the page proxy/status.html, built into the binary by CMake
 * (status_page.c is generated from it). Self-contained: one inline <style>
 * and one inline <script> (the admin endpoint's Content-Security-Policy
 * allows exactly those by their SHA-256), no other asset. The script
 * fetches /sessions from the same origin and builds the DOM with
 * textContent only, so nothing a peer sent can become markup. */
extern const char status_page_html[]; /* NUL-terminated */
extern const size_t status_page_len;  /* without the NUL */

#endif
