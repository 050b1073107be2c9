package main

import (
	"bytes"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

type apiReply struct {
	Code int         `json:"code"`
	Msg  string      `json:"msg"`
	Data interface{} `json:"data,omitempty"`
}

type versionData struct {
	Version string `json:"version"`
	Trial   bool   `json:"trial"`
}

type versionReply struct {
	Code int         `json:"code"`
	Msg  string      `json:"msg"`
	Data versionData `json:"data"`
}

func writeJSON(w http.ResponseWriter, status int, v interface{}) {
	buf, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf)
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, apiReply{Code: -1, Msg: msg})
}

// ServeHTTP routes every request.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if a.hooks && strings.HasPrefix(p, "/__test/") {
		a.serveHook(w, r)
		return
	}
	if !a.isInstalled() {
		switch {
		case strings.HasPrefix(p, "/static"):
			a.serveStatic(w, r, a.execDir)
		case strings.HasPrefix(p, "/install"):
			a.serveInstall(w, r)
		default:
			http.Redirect(w, r, "/install", http.StatusFound)
		}
		return
	}
	if strings.HasPrefix(p, "/install") {
		http.Redirect(w, r, "/", http.StatusFound)
		return
	}
	site := a.siteFor(r.Host, r.Header.Get("X-Host"))
	if site.Broken != "" || site.DB == nil {
		http.Error(w, "503 Service Unavailable: site is not available", http.StatusServiceUnavailable)
		return
	}
	switch {
	case p == "/system/api/version/info":
		writeJSON(w, http.StatusOK, versionReply{Data: versionData{Version: appVersion}})
	case p == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		a.serveIndex(w, r, site)
	case strings.HasPrefix(p, "/archive/") && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		a.serveArchive(w, r, site)
	case p == "/api/archive":
		a.postArchive(w, r, site)
	case p == "/api/attachment":
		a.postAttachment(w, r, site)
	case strings.HasPrefix(p, "/static/"):
		a.serveStatic(w, r, site.RootPath)
	case strings.HasPrefix(p, "/uploads/"):
		http.StripPrefix("/uploads/", http.FileServer(http.Dir(filepath.Join(site.RootPath, "public", "uploads")))).ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (a *App) serveStatic(w http.ResponseWriter, r *http.Request, root string) {
	dir := filepath.Join(root, "public", "static")
	if _, err := os.Stat(dir); err != nil {
		dir = filepath.Join(a.execDir, "public", "static")
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/static"), "/")
	http.ServeFile(w, r, filepath.Join(dir, filepath.FromSlash(path.Clean("/"+rel))))
}

const installForm = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>AnQiCMS install</title><link rel="stylesheet" href="/static/css/style.css"></head>
<body><h1>AnQiCMS {{.}} install</h1>
<form method="post" action="/install">
<label>MySQL host <input name="host" value="localhost"></label>
<label>MySQL port <input name="port" value="3306"></label>
<label>Database <input name="database" value="anqicms"></label>
<label>MySQL user <input name="user" value="root"></label>
<label>MySQL password <input name="password" type="password"></label>
<label>Admin user <input name="admin_user" value="admin"></label>
<label>Admin password (6+ characters) <input name="admin_password" type="password"></label>
<label>Site URL <input name="base_url"></label>
<label>Preview data <input name="preview_data" type="checkbox" value="1"></label>
<button type="submit">Install</button>
</form></body></html>
`

var installTpl = template.Must(template.New("install").Parse(installForm))

func (a *App) serveInstall(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = installTpl.Execute(w, appVersion)
		return
	}
	if err := r.ParseForm(); err != nil {
		apiError(w, http.StatusOK, "invalid form: "+err.Error())
		return
	}
	f := func(k string) string { return strings.TrimSpace(r.PostForm.Get(k)) }
	port := 3306
	if s := f("port"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 || v > 65535 {
			apiError(w, http.StatusOK, fmt.Sprintf("port %q is not a valid port number (1-65535)", s))
			return
		}
		port = v
	}
	conf := MysqlConfig{Database: f("database"), User: f("user"), Password: r.PostForm.Get("password"), Host: f("host"), Port: port}
	adminUser, adminPassword := f("admin_user"), r.PostForm.Get("admin_password")
	switch {
	case conf.Host == "" || conf.User == "" || conf.Database == "":
		apiError(w, http.StatusOK, "host, user and database are required")
		return
	case adminUser == "":
		apiError(w, http.StatusOK, "admin_user is required")
		return
	case len(adminPassword) < 6:
		apiError(w, http.StatusOK, "admin_password must be at least 6 characters")
		return
	}
	baseURL := strings.TrimRight(f("base_url"), "/")
	a.installMu.Lock()
	defer a.installMu.Unlock()
	if a.isInstalled() {
		apiError(w, http.StatusOK, "already installed")
		return
	}
	db, err := openDB(conf)
	if err == nil {
		err = migrate(db)
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		apiError(w, http.StatusOK, "database connection failed: "+err.Error())
		return
	}
	a.mu.RLock()
	full := a.conf
	a.mu.RUnlock()
	full.Mysql = conf
	full.Server.Port = a.port
	if err = a.writeConfig(full); err != nil {
		db.Close()
		apiError(w, http.StatusOK, "cannot write config.json: "+err.Error())
		return
	}
	if err = a.installData(db, conf, "AnQiCMS", baseURL, adminUser, adminPassword, true); err == nil {
		if pv := f("preview_data"); pv == "1" || pv == "true" || pv == "on" {
			err = insertPreviewData(db)
		}
	}
	if err == nil {
		err = a.loadSites(db, full)
	}
	if err != nil {
		apiError(w, http.StatusOK, "install failed: "+err.Error())
		return
	}
	log.Printf("installed: database %s on %s:%d, admin %s", conf.Database, conf.Host, conf.Port, adminUser)
	writeJSON(w, http.StatusOK, apiReply{Code: 0, Msg: "install finished"})
}

type archive struct {
	ID      int64
	Title   string
	Content template.HTML
	Created time.Time
}

const defaultIndexTpl = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>{{.Site}}</title></head><body><h1>{{.Site}}</h1><ul>
{{range .Archives}}<li><a href="/archive/{{.ID}}">{{.Title}}</a></li>
{{end}}</ul></body></html>
`

const defaultArchiveTpl = `<!DOCTYPE html><html><head><meta charset="utf-8"><title>{{.Archive.Title}}</title></head><body>
<h1>{{.Archive.Title}}</h1><div class="content">{{.Archive.Content}}</div></body></html>
`

func (a *App) templates(site *Site) *template.Template {
	for _, root := range []string{site.RootPath, a.execDir} {
		t, err := template.ParseGlob(filepath.Join(root, "template", "default", "*.html"))
		if err == nil && t.Lookup("index.html") != nil && t.Lookup("archive.html") != nil {
			return t
		}
	}
	t := template.Must(template.New("index.html").Parse(defaultIndexTpl))
	template.Must(t.New("archive.html").Parse(defaultArchiveTpl))
	return t
}

func (s *Site) cached(key string) ([]byte, bool) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	b, ok := s.cache[key]
	return b, ok
}

func (s *Site) store(key string, b []byte) {
	s.cacheMu.Lock()
	s.cache[key] = b
	s.cacheMu.Unlock()
}

func writeHTML(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

func (a *App) serveIndex(w http.ResponseWriter, r *http.Request, site *Site) {
	ctx := r.Context()
	var maxID sql.NullInt64
	if err := site.DB.QueryRowContext(ctx, "SELECT MAX(`id`) FROM `archives`").Scan(&maxID); err != nil {
		apiError(w, http.StatusInternalServerError, "database error: "+err.Error())
		return
	}
	key := "index:" + strconv.FormatInt(maxID.Int64, 10)
	if b, ok := site.cached(key); ok {
		writeHTML(w, b)
		return
	}
	rows, err := site.DB.QueryContext(ctx, "SELECT `id`, `title`, `created_time` FROM `archives` WHERE `status` = 1 ORDER BY `id` DESC LIMIT 20")
	if err != nil {
		apiError(w, http.StatusInternalServerError, "database error: "+err.Error())
		return
	}
	defer rows.Close()
	var list []archive
	for rows.Next() {
		var ar archive
		var created int64
		if err = rows.Scan(&ar.ID, &ar.Title, &created); err != nil {
			apiError(w, http.StatusInternalServerError, "database error: "+err.Error())
			return
		}
		ar.Created = time.Unix(created, 0)
		list = append(list, ar)
	}
	var buf bytes.Buffer
	if err = a.templates(site).ExecuteTemplate(&buf, "index.html", map[string]interface{}{"Site": site.Name, "Archives": list}); err != nil {
		apiError(w, http.StatusInternalServerError, "template error: "+err.Error())
		return
	}
	site.store(key, buf.Bytes())
	writeHTML(w, buf.Bytes())
}

func (a *App) serveArchive(w http.ResponseWriter, r *http.Request, site *Site) {
	id, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/archive/"), 10, 64)
	if err != nil || id <= 0 {
		http.NotFound(w, r)
		return
	}
	key := "archive:" + strconv.FormatInt(id, 10)
	if b, ok := site.cached(key); ok {
		writeHTML(w, b)
		return
	}
	var ar archive
	var content sql.NullString
	var created int64
	err = site.DB.QueryRowContext(r.Context(), "SELECT `id`, `title`, `content`, `created_time` FROM `archives` WHERE `id` = ?", id).Scan(&ar.ID, &ar.Title, &content, &created)
	if err == sql.ErrNoRows {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		apiError(w, http.StatusInternalServerError, "database error: "+err.Error())
		return
	}
	ar.Content = template.HTML(content.String) //nolint:gosec // stored by the site's own admin API
	ar.Created = time.Unix(created, 0)
	var buf bytes.Buffer
	if err = a.templates(site).ExecuteTemplate(&buf, "archive.html", map[string]interface{}{"Site": site.Name, "Archive": ar}); err != nil {
		apiError(w, http.StatusInternalServerError, "template error: "+err.Error())
		return
	}
	site.store(key, buf.Bytes())
	writeHTML(w, buf.Bytes())
}

// postArchive answers only after the row is committed.
func (a *App) postArchive(w http.ResponseWriter, r *http.Request, site *Site) {
	if r.Method != http.MethodPost {
		apiError(w, http.StatusMethodNotAllowed, "POST required")
		return
	}
	if err := r.ParseForm(); err != nil {
		apiError(w, http.StatusBadRequest, "invalid form: "+err.Error())
		return
	}
	title := strings.TrimSpace(r.PostForm.Get("title"))
	if title == "" {
		apiError(w, http.StatusBadRequest, "title is required")
		return
	}
	ctx := r.Context()
	tx, err := site.DB.BeginTx(ctx, nil)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "write failed: "+err.Error())
		return
	}
	now := time.Now().Unix()
	res, err := tx.ExecContext(ctx, "INSERT INTO `archives` (`title`, `content`, `created_time`, `updated_time`) VALUES (?, ?, ?, ?)", title, r.PostForm.Get("content"), now, now)
	if err != nil {
		_ = tx.Rollback()
		apiError(w, http.StatusInternalServerError, "write failed: "+err.Error())
		return
	}
	id, err := res.LastInsertId()
	if err == nil {
		err = tx.Commit()
	} else {
		_ = tx.Rollback()
	}
	if err != nil {
		apiError(w, http.StatusInternalServerError, "write failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, apiReply{Code: 0, Data: map[string]int64{"id": id}})
}

// postAttachment stores the file under public/uploads/YYYYMM/<md5><ext> and records a row.
func (a *App) postAttachment(w http.ResponseWriter, r *http.Request, site *Site) {
	if r.Method != http.MethodPost {
		apiError(w, http.StatusMethodNotAllowed, "POST required")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<20)
	file, header, err := r.FormFile("file")
	if err != nil {
		apiError(w, http.StatusBadRequest, "multipart field 'file' is required: "+err.Error())
		return
	}
	defer file.Close()
	rel := filepath.Join("uploads", time.Now().Format("200601"))
	dir := filepath.Join(site.RootPath, "public", rel)
	if err = os.MkdirAll(dir, 0o755); err != nil {
		apiError(w, http.StatusInternalServerError, "write failed: "+err.Error())
		return
	}
	tmp, err := os.CreateTemp(dir, ".upload-*")
	if err != nil {
		apiError(w, http.StatusInternalServerError, "write failed: "+err.Error())
		return
	}
	h := md5.New() //nolint:gosec // file naming, as the real app does
	size, err := io.Copy(io.MultiWriter(tmp, h), file)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp.Name())
		apiError(w, http.StatusInternalServerError, "write failed: "+err.Error())
		return
	}
	sum := hex.EncodeToString(h.Sum(nil))
	ext := strings.ToLower(filepath.Ext(header.Filename))
	if len(ext) > 10 || strings.ContainsAny(ext, "/\\") {
		ext = ""
	}
	name := sum + ext
	if err = os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		os.Remove(tmp.Name())
		apiError(w, http.StatusInternalServerError, "write failed: "+err.Error())
		return
	}
	location := filepath.ToSlash(filepath.Join(rel, name))
	res, err := site.DB.ExecContext(r.Context(), "INSERT INTO `attachments` (`file_name`, `file_location`, `file_size`, `file_md5`, `created_time`) VALUES (?, ?, ?, ?, ?)",
		filepath.Base(header.Filename), location, size, sum, time.Now().Unix())
	var id int64
	if err == nil {
		id, err = res.LastInsertId()
	}
	if err != nil {
		apiError(w, http.StatusInternalServerError, "write failed: "+err.Error())
		return
	}
	writeJSON(w, http.StatusOK, apiReply{Code: 0, Data: map[string]interface{}{"id": id, "file_location": location, "file_md5": sum, "file_size": size}})
}
