package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Pool settings hard-coded per site, as in AnQiCMS 3.5.8 provider/dao.go.
const (
	poolMaxOpen     = 20
	poolMaxIdle     = 500
	poolMaxLifetime = 5 * time.Minute
)

// Site is one row of the websites table with its own DB pool and root directory.
type Site struct {
	ID       int64
	Name     string
	RootPath string
	BaseURL  string
	Status   int
	host     string // host[:port] of BaseURL, lower case
	hostname string // host of BaseURL without port
	DB       *sql.DB
	Broken   string

	cacheMu sync.Mutex
	cache   map[string][]byte // page cache: grows, never evicted
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func dsnFor(m MysqlConfig, withDB bool) string {
	cfg := mysql.NewConfig()
	cfg.User = m.User
	cfg.Passwd = m.Password
	cfg.Net = "tcp"
	port := m.Port
	if port == 0 {
		port = 3306
	}
	cfg.Addr = net.JoinHostPort(m.Host, strconv.Itoa(port))
	if withDB {
		cfg.DBName = m.Database
	}
	cfg.Params = map[string]string{"charset": "utf8mb4"}
	cfg.ParseTime = true
	cfg.Loc = time.Local
	cfg.Timeout = 10 * time.Second
	return cfg.FormatDSN()
}

func validDBName(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "`/\\.\x00 ") {
		return fmt.Errorf("invalid database name %q", name)
	}
	return nil
}

// openDB connects with the fixed pool settings; an unknown database (1049) is created.
func openDB(m MysqlConfig) (*sql.DB, error) {
	if err := validDBName(m.Database); err != nil {
		return nil, err
	}
	db, err := pingDB(dsnFor(m, true))
	var me *mysql.MySQLError
	if err != nil && errors.As(err, &me) && me.Number == 1049 {
		root, err2 := pingDB(dsnFor(m, false))
		if err2 != nil {
			return nil, err2
		}
		ctx, cancel := contextWithTimeout(30 * time.Second)
		_, err2 = root.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+m.Database+"` DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
		cancel()
		root.Close()
		if err2 != nil {
			return nil, err2
		}
		log.Printf("created database %s on %s:%d", m.Database, m.Host, m.Port)
		db, err = pingDB(dsnFor(m, true))
	}
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(poolMaxOpen)
	db.SetMaxIdleConns(poolMaxIdle)
	db.SetConnMaxLifetime(poolMaxLifetime)
	return db, nil
}

func pingDB(dsn string) (*sql.DB, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := contextWithTimeout(15 * time.Second)
	defer cancel()
	if err = db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

var schema = []string{
	"CREATE TABLE IF NOT EXISTS `websites` (`id` bigint unsigned NOT NULL AUTO_INCREMENT, `parent_id` bigint unsigned NOT NULL DEFAULT 0, " +
		"`root_path` varchar(190) NOT NULL DEFAULT '', `name` varchar(190) NOT NULL DEFAULT '', `mysql` text, " +
		"`status` tinyint NOT NULL DEFAULT 1, `base_url` varchar(190) NOT NULL DEFAULT '', " +
		"`created_time` int NOT NULL DEFAULT 0, `updated_time` int NOT NULL DEFAULT 0, PRIMARY KEY (`id`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
	"CREATE TABLE IF NOT EXISTS `archives` (`id` bigint unsigned NOT NULL AUTO_INCREMENT, `title` varchar(250) NOT NULL DEFAULT '', " +
		"`content` longtext, `status` tinyint NOT NULL DEFAULT 1, `created_time` int NOT NULL DEFAULT 0, " +
		"`updated_time` int NOT NULL DEFAULT 0, PRIMARY KEY (`id`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
	"CREATE TABLE IF NOT EXISTS `attachments` (`id` bigint unsigned NOT NULL AUTO_INCREMENT, `file_name` varchar(250) NOT NULL DEFAULT '', " +
		"`file_location` varchar(250) NOT NULL DEFAULT '', `file_size` bigint NOT NULL DEFAULT 0, `file_md5` char(32) NOT NULL DEFAULT '', " +
		"`created_time` int NOT NULL DEFAULT 0, PRIMARY KEY (`id`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
	"CREATE TABLE IF NOT EXISTS `admins` (`id` bigint unsigned NOT NULL AUTO_INCREMENT, `user_name` varchar(64) NOT NULL, " +
		"`password` varchar(255) NOT NULL, `status` tinyint NOT NULL DEFAULT 1, `created_time` int NOT NULL DEFAULT 0, " +
		"PRIMARY KEY (`id`), UNIQUE KEY `idx_user_name` (`user_name`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
	"CREATE TABLE IF NOT EXISTS `settings` (`key` varchar(190) NOT NULL, `value` longtext, PRIMARY KEY (`key`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
}

func migrate(db *sql.DB) error {
	ctx, cancel := contextWithTimeout(60 * time.Second)
	defer cancel()
	for _, stmt := range schema {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	return nil
}

// hashPassword stores a salted SHA-256, never the password.
func hashPassword(password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(salt, []byte(password)...))
	return "sha256$" + hex.EncodeToString(salt) + "$" + hex.EncodeToString(sum[:]), nil
}

// installData creates site 1 and the administrator in the default DB.
func (a *App) installData(db *sql.DB, conf MysqlConfig, siteName, baseURL, adminUser, adminPassword string, overwriteAdmin bool) error {
	ctx, cancel := contextWithTimeout(30 * time.Second)
	defer cancel()
	now := time.Now().Unix()
	mysqlJSON, err := json.Marshal(conf)
	if err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, "INSERT INTO `websites` (`id`, `root_path`, `name`, `mysql`, `status`, `base_url`, `created_time`, `updated_time`) "+
		"VALUES (1, ?, ?, ?, 1, ?, ?, ?) ON DUPLICATE KEY UPDATE `root_path` = VALUES(`root_path`), `mysql` = VALUES(`mysql`), "+
		"`base_url` = IF(VALUES(`base_url`) = '', `base_url`, VALUES(`base_url`)), `updated_time` = VALUES(`updated_time`)",
		a.execDir, siteName, string(mysqlJSON), baseURL, now, now)
	if err != nil {
		return fmt.Errorf("site 1: %w", err)
	}
	var count int
	if err = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `admins`").Scan(&count); err != nil {
		return err
	}
	if count > 0 && !overwriteAdmin {
		return nil
	}
	hash, err := hashPassword(adminPassword)
	if err != nil {
		return err
	}
	if count > 0 {
		_, err = db.ExecContext(ctx, "UPDATE `admins` SET `user_name` = ?, `password` = ? ORDER BY `id` LIMIT 1", adminUser, hash)
	} else {
		_, err = db.ExecContext(ctx, "INSERT INTO `admins` (`user_name`, `password`, `status`, `created_time`) VALUES (?, ?, 1, ?)", adminUser, hash, now)
	}
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

func insertPreviewData(db *sql.DB) error {
	ctx, cancel := contextWithTimeout(30 * time.Second)
	defer cancel()
	now := time.Now().Unix()
	for i := 1; i <= 3; i++ {
		if _, err := db.ExecContext(ctx, "INSERT INTO `archives` (`title`, `content`, `created_time`, `updated_time`) VALUES (?, ?, ?, ?)",
			fmt.Sprintf("Sample article %d", i), fmt.Sprintf("<p>Sample content %d.</p>", i), now, now); err != nil {
			return err
		}
	}
	return nil
}

// initDatabase connects the default DB at start-up and loads every site.
func (a *App) initDatabase(envInstall bool) error {
	a.mu.RLock()
	conf := a.conf
	a.mu.RUnlock()
	log.Printf("start-up: connecting to database %s on %s:%d", conf.Mysql.Database, conf.Mysql.Host, conf.Mysql.Port)
	db, err := openDB(conf.Mysql)
	if err != nil {
		return err
	}
	if err = migrate(db); err != nil {
		return err
	}
	if envInstall {
		if err = a.installData(db, conf.Mysql, "AnQiCMS", "", "admin", "123456", false); err != nil {
			return fmt.Errorf("environment install: %w", err)
		}
	}
	return a.loadSites(db, conf)
}

func parseBaseURL(s *Site) {
	if s.BaseURL == "" {
		return
	}
	u, err := url.Parse(s.BaseURL)
	if err != nil || u.Host == "" {
		return
	}
	s.host = strings.ToLower(u.Host)
	s.hostname = strings.ToLower(u.Hostname())
}

func ensureSiteDirs(root string) {
	for _, d := range []string{"cache", "data", filepath.Join("public", "uploads")} {
		_ = os.MkdirAll(filepath.Join(root, d), 0o755)
	}
}

// loadSites reads the websites table of the default DB and opens every site.
func (a *App) loadSites(db *sql.DB, conf ServerJSON) error {
	ctx, cancel := contextWithTimeout(30 * time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, "SELECT `id`, `root_path`, `name`, IFNULL(`mysql`, ''), `status`, `base_url` FROM `websites` ORDER BY `id`")
	if err != nil {
		return err
	}
	type row struct {
		s         *Site
		mysqlJSON string
	}
	var list []row
	for rows.Next() {
		s := &Site{cache: map[string][]byte{}}
		var mj string
		if err = rows.Scan(&s.ID, &s.RootPath, &s.Name, &mj, &s.Status, &s.BaseURL); err != nil {
			rows.Close()
			return err
		}
		list = append(list, row{s, mj})
	}
	rows.Close()
	if err = rows.Err(); err != nil {
		return err
	}
	def := &Site{ID: 1, Name: "AnQiCMS", cache: map[string][]byte{}}
	var sites []*Site
	for _, r := range list {
		s := r.s
		parseBaseURL(s)
		if s.ID == 1 {
			def.Name, def.BaseURL, def.Status, def.host, def.hostname = s.Name, s.BaseURL, s.Status, s.host, s.hostname
			continue
		}
		sites = append(sites, s)
		var m MysqlConfig
		if err := json.Unmarshal([]byte(r.mysqlJSON), &m); err != nil {
			s.Broken = fmt.Sprintf("site %d: websites.mysql is not valid JSON: %v", s.ID, err)
			a.logError("%s", s.Broken)
			continue
		}
		if m.UseDefault {
			m.User, m.Password, m.Host, m.Port = conf.Mysql.User, conf.Mysql.Password, conf.Mysql.Host, conf.Mysql.Port
		}
		if st, err := os.Stat(s.RootPath); s.RootPath == "" || err != nil || !st.IsDir() {
			s.Broken = fmt.Sprintf("site %d (%s): root_path %q is missing", s.ID, s.BaseURL, s.RootPath)
			a.logError("%s", s.Broken)
			continue
		}
		ensureSiteDirs(s.RootPath)
		sdb, err := openDB(m)
		if err == nil {
			err = migrate(sdb)
		}
		if err != nil {
			s.Broken = fmt.Sprintf("site %d (%s): database %s: %v", s.ID, s.BaseURL, m.Database, err)
			a.logError("%s", s.Broken)
			continue
		}
		s.DB = sdb
		log.Printf("site %d %q ready (db %s, root %s)", s.ID, s.BaseURL, m.Database, s.RootPath)
	}
	def.RootPath = a.execDir
	def.DB = db
	ensureSiteDirs(def.RootPath)
	a.mu.Lock()
	old := a.sites
	a.def = def
	a.sites = sites
	a.installed = true
	a.conf = conf
	a.mu.Unlock()
	for _, s := range old {
		if s.DB != nil {
			s.DB.Close()
		}
	}
	return nil
}

// siteFor routes by X-Host, then Host, against each site's base_url; site 1 is the fallback.
func (a *App) siteFor(hostHeader, xHost string) *Site {
	a.mu.RLock()
	defer a.mu.RUnlock()
	host := strings.ToLower(strings.TrimSpace(xHost))
	if host == "" {
		host = strings.ToLower(hostHeader)
	}
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	all := append([]*Site{a.def}, a.sites...)
	for _, s := range all {
		if s.host != "" && s.host == host {
			return s
		}
	}
	for _, s := range all {
		if s.hostname != "" && s.hostname == name {
			return s
		}
	}
	return a.def
}
